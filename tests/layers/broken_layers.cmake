# Closures that break every rule of check_layers.cmake, for the test that the check can fail.
set(closure_usher_core usher_streams SQLite::SQLite3 /usr/lib/x86_64-linux-gnu/libsqlite3.so)
set(closure_usher_formats usher_core usher_sqlite SQLite::SQLite3)
set(closure_usher_headend usher_formats usher_engine)
set(closure_usher_stb usher_formats usher_engine)
set(closure_usher_wallet_bridge usher_formats usher_postgres)
set(closure_usher_billing usher_formats usher_sqlite usher_engine)
