// What the STB shows a person: the clear transport stream through GStreamer (tsdemux, decodebin,
// autovideosink/autoaudiosink; `--out play`, CI writes files instead), and QR codes.
#pragma once

#include <memory>

#include "usher/streams/io.h"

namespace usher::stb {

// Draws `text` as a QR code for a terminal (Unicode half blocks, dark on light), as an STB would put
// one on screen for a handset to scan.
std::string render_qr(const std::string& text);

// Opens a GStreamer playback sink. Throws std::runtime_error when GStreamer cannot build it.
std::unique_ptr<streams::PacketSink> open_player();

}  // namespace usher::stb
