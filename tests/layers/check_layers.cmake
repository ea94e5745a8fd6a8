# The libraries' layers (docs/architecture.md, "Libraries and keys"), checked by ctest:
#   cmake -DCLOSURES=<file> [-DNM=<nm> -DARCHIVE_<target>=<lib.a>...] -P check_layers.cmake
# CLOSURES sets closure_<target> to what that target links (link_closure.cmake). Each archive given
# is also read with nm: a library may not call into a layer its link line leaves out (an inline
# function from a header of the engine, say), which the link line alone would not show.
cmake_minimum_required(VERSION 3.22)
if(NOT DEFINED CLOSURES)
  message(FATAL_ERROR "check_layers.cmake: give -DCLOSURES=<file>")
endif()
include(${CLOSURES})

set(failures "")
# rule(<target> <forbidden>...): <target> must not link any of <forbidden>, even indirectly.
function(rule target)
  if(NOT DEFINED closure_${target})
    set(failures "${failures}\n  ${target}: no link closure recorded" PARENT_SCOPE)
    return()
  endif()
  foreach(forbidden IN LISTS ARGN)
    if(forbidden IN_LIST closure_${target})
      set(failures "${failures}\n  ${target} links ${forbidden} (it links: ${closure_${target}})")
    endif()
  endforeach()
  # SQLite named as a file or a flag rather than through its imported target.
  if("SQLite::SQLite3" IN_LIST ARGN)
    foreach(item IN LISTS closure_${target})
      if(item MATCHES "(^|/|-l)(lib)?sqlite3([.]|$)")
        set(failures "${failures}\n  ${target} links ${item}")
      endif()
    endforeach()
  endif()
  set(failures "${failures}" PARENT_SCOPE)
endfunction()

# core depends on no storage and no entitlement code; the formats on no storage and no engine.
rule(usher_core SQLite::SQLite3 usher_sql usher_sqlite usher_postgres usher_formats usher_engine)
rule(usher_formats SQLite::SQLite3 usher_sql usher_sqlite usher_postgres usher_engine)
# The headend, STB and handset speak the formats; the operator's engine stays in its own process.
rule(usher_headend usher_engine usher_postgres)
rule(usher_stb usher_engine usher_postgres)
rule(usher_wallet_bridge usher_engine usher_postgres)
# Billing is the engine's client over its protocol, with keys of its own: it may run on another host.
rule(usher_billing usher_engine)

# symbols(<target> <regex>): the archive of <target> has no undefined symbol matching <regex>.
function(symbols target regex)
  if(NOT DEFINED ARCHIVE_${target})
    return()
  endif()
  execute_process(COMMAND ${NM} -C --undefined-only ${ARCHIVE_${target}} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    set(failures "${failures}\n  cannot read ${ARCHIVE_${target}} with ${NM}" PARENT_SCOPE)
    return()
  endif()
  string(REGEX MATCHALL "[^\n]*(${regex})[^\n]*" hits "${out}")
  if(hits)
    list(REMOVE_DUPLICATES hits)
    list(LENGTH hits count)
    # The first two of each kind of call, in the archive's order, say enough (the first five of
    # all could be of one kind).
    string(REPLACE "|" ";" kinds "${regex}")
    list(LENGTH kinds kind_count)
    math(EXPR last_kind "${kind_count} - 1")
    foreach(i RANGE ${last_kind})
      set(taken_${i} 0)
    endforeach()
    set(picked "")
    foreach(hit IN LISTS hits)
      foreach(i RANGE ${last_kind})
        list(GET kinds ${i} kind)
        if(taken_${i} LESS 2 AND hit MATCHES "${kind}")
          list(APPEND picked "${hit}")
          math(EXPR taken_${i} "${taken_${i}} + 1")
          break()
        endif()
      endforeach()
    endforeach()
    list(REMOVE_DUPLICATES picked)
    list(JOIN picked "\n    " shown)
    set(shown "${count} symbols, among them:\n    ${shown}")
    set(failures "${failures}\n  ${target} calls what it must not link:\n    ${shown}" PARENT_SCOPE)
  endif()
endfunction()

set(sqlite_calls "sqlite3_|usher::sql::|usher::open_private_database")
set(engine_calls "usher::entitlement::EntitlementStore|usher::entitlement::EngineService|usher::entitlement::TestAcquirer")
symbols(usher_core "${sqlite_calls}")
symbols(usher_formats "${sqlite_calls}|${engine_calls}")
symbols(usher_headend "${engine_calls}")
symbols(usher_stb "${engine_calls}")
symbols(usher_wallet_bridge "${engine_calls}")
symbols(usher_billing "${engine_calls}")

if(failures)
  message(FATAL_ERROR "the libraries' layers are broken:${failures}")
endif()
message(STATUS "layers kept: usher_core and usher_formats link no SQLite; usher_headend, usher_stb, "
  "usher_wallet_bridge and usher_billing link no engine")
