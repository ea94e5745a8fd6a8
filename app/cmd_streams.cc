// usher streams: generate a test stream; show a stream's PSI and CA signalling.
#include <cstdio>
#include <map>

#include "cli.h"
#include "usher/streams/generator.h"
#include "usher/streams/psi.h"

namespace usher::cli {
namespace {

struct StreamsOptions {
  std::string out;
  int seconds = 10;
  int width = 640;
  int height = 360;
  int fps = 25;
  int kbps = 1500;
  std::string in;
};

int generate(const StreamsOptions& a) {
  streams::GeneratorOptions o;
  o.seconds = a.seconds;
  o.width = a.width;
  o.height = a.height;
  o.fps = a.fps;
  o.video_kbps = a.kbps;
  streams::generate_test_stream(a.out, o);
  std::printf("wrote %s: %d s of H.264 %dx%d@%d + AAC\n", a.out.c_str(), o.seconds, o.width, o.height, o.fps);
  return 0;
}

int info(const StreamsOptions& a) {
  auto src = streams::open_source(a.in, {std::chrono::milliseconds(2000)});
  std::vector<streams::TsPacket> packets;
  std::map<std::uint16_t, std::uint64_t> per_pid;
  std::map<std::uint16_t, std::uint64_t> scrambled;
  streams::ContinuityChecker cc;
  std::map<std::uint16_t, std::unique_ptr<streams::SectionAssembler>> asm_;
  std::vector<std::string> lines;
  std::set<std::string> seen;
  auto note = [&](const std::string& s) {
    if (seen.insert(s).second) lines.push_back(s);
  };
  auto describe_ca = [&](const std::vector<std::uint8_t>& loop, const std::string& where) {
    for (const auto& ca : streams::find_ca_descriptors(loop)) {
      char buf[128];
      std::snprintf(buf, sizeof(buf), "  %s: CA_descriptor CA_system_id 0x%04x CA_PID %u", where.c_str(), ca.ca_system_id, ca.ca_pid);
      note(buf);
    }
  };
  asm_[0] = std::make_unique<streams::SectionAssembler>([&](auto s) {
    if (const auto pat = streams::Pat::parse(s)) {
      for (const auto& prog : pat->programs) {
        note("PAT: program " + std::to_string(prog.program_number) + " -> PMT PID " + std::to_string(prog.pid));
        if (prog.program_number == 0 || asm_.contains(prog.pid)) continue;
        const auto number = prog.program_number;
        asm_[prog.pid] = std::make_unique<streams::SectionAssembler>([&, number](auto sec) {
          if (const auto pmt = streams::Pmt::parse(sec)) {
            note("PMT program " + std::to_string(number) + " version " + std::to_string(pmt->version) + ": PCR PID " +
                 std::to_string(pmt->pcr_pid));
            describe_ca(pmt->descriptors, "program " + std::to_string(number));
            for (const auto& st : pmt->streams) {
              char buf[96];
              std::snprintf(buf, sizeof(buf), "  stream type 0x%02x PID %u", st.stream_type, st.pid);
              note(buf);
              describe_ca(st.descriptors, "PID " + std::to_string(st.pid));
            }
          }
        });
      }
    }
  });
  asm_[1] = std::make_unique<streams::SectionAssembler>([&](auto s) {
    if (const auto cat = streams::Cat::parse(s)) {
      note("CAT version " + std::to_string(cat->version));
      describe_ca(cat->descriptors, "CAT");
    }
  });
  asm_[streams::kEitPid] = std::make_unique<streams::SectionAssembler>([&](auto sec) {
    if (const auto eit = streams::Eit::parse(sec)) {
      for (const auto& ev : eit->events) {
        note("EIT " + std::string(eit->section_number == 0 ? "present" : "following") + " service " +
             std::to_string(eit->service_id) + ": event " + std::to_string(ev.event_id) + " '" +
             streams::short_event_name(ev.descriptors) + "' " + format_utc(ev.start) + " for " + std::to_string(ev.duration) +
             " s" + (ev.free_ca_mode ? ", scrambled" : ""));
      }
    }
  });
  std::uint64_t total = 0;
  bool more = true;
  while (more) {
    packets.clear();
    more = src->read(packets, 4096);
    for (const auto& p : packets) {
      ++total;
      ++per_pid[p.pid()];
      if (p.scrambling() != streams::Scrambling::clear) ++scrambled[p.pid()];
      cc.check(p);
      if (auto it = asm_.find(p.pid()); it != asm_.end()) it->second->feed(p);
    }
  }
  std::printf("%llu packets, %llu bytes skipped to resynchronise, %llu continuity errors\n",
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(src->discarded_bytes()),
              static_cast<unsigned long long>(cc.errors()));
  for (const auto& l : lines) std::printf("%s\n", l.c_str());
  std::printf("PIDs:\n");
  for (const auto& [pid, n] : per_pid) {
    std::printf("  %5u (0x%04x): %10llu packets, %llu scrambled\n", pid, pid, static_cast<unsigned long long>(n),
                static_cast<unsigned long long>(scrambled[pid]));
  }
  return 0;
}

}  // namespace

void add_streams(CLI::App& root, Commands& commands) {
  auto o = std::make_shared<StreamsOptions>();
  auto* streams = add_group(root, "streams", "MPEG-TS tools: generate a test stream, show a stream's PSI and CA signalling");

  auto* gen = streams->add_subcommand("generate", "Makes a real H.264 + AAC transport stream with GStreamer.");
  gen->add_option("--out", o->out, "the file to write")->type_name("FILE")->required();
  add_integer(*gen, "--seconds", o->seconds, "length", 1, 86400);
  add_integer(*gen, "--width", o->width, "picture width", 16, 7680);
  add_integer(*gen, "--height", o->height, "picture height", 16, 4320);
  add_integer(*gen, "--fps", o->fps, "frames per second", 1, 120);
  add_integer(*gen, "--kbps", o->kbps, "video bit rate", 50, 100000);
  commands.on(gen, [o] { return generate(*o); });

  auto* inf = streams->add_subcommand(
      "info", "Packets, PIDs, scrambled packets, PAT/PMT/CAT with CA descriptors, EIT present/following, continuity errors.");
  inf->add_option("IN", o->in, "a file, - (stdin), udp:// or rtp://")->required();
  commands.on(inf, [o] { return info(*o); });
}

}  // namespace usher::cli
