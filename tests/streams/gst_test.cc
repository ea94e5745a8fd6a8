// The GStreamer wrapper: a description GStreamer cannot build, and a pipeline that fails once running,
// both come back as errors carrying GStreamer's message (no crash, no wait for an end that never
// comes); a good pipeline runs to its end; the generator and the player report the same way.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "temp_dir.h"
#include "usher/stb/player.h"
#include "usher/streams/generator.h"
#include "usher/streams/gst.h"

namespace usher::streams {
namespace {

TEST(Gst, AnUnknownElementIsAnErrorNamingIt) {
  auto pipeline = gst::Pipeline::parse("fakesrc num-buffers=1 ! no_such_element_here ! fakesink");
  ASSERT_FALSE(pipeline.ok());
  EXPECT_EQ(pipeline.error().code, Errc::invalid_argument);
  EXPECT_NE(pipeline.error().message.find("no_such_element_here"), std::string::npos) << pipeline.error().message;
}

TEST(Gst, BadDescriptionsAreErrorsNotCrashes) {
  for (const char* description : {"", "!", "fakesrc ! ! fakesink", "fakesrc num-buffers=notanumber ! fakesink",
                                  "fakesrc ! video/x-raw ! audio/x-raw ! fakesink", "fakesrc ! mux. fakesink"}) {
    SCOPED_TRACE(description);
    auto pipeline = gst::Pipeline::parse(description);
    if (pipeline.ok()) {
      // GStreamer builds some of these anyway; running them must still end with an answer.
      auto ran = pipeline->run_to_end();
      if (!ran.ok()) {
        EXPECT_FALSE(ran.error().message.empty());
      }
    } else {
      EXPECT_FALSE(pipeline.error().message.empty());
    }
  }
}

TEST(Gst, AGoodPipelineRunsToItsEnd) {
  auto pipeline = gst::Pipeline::parse("fakesrc num-buffers=10 ! fakesink name=out");
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  EXPECT_TRUE(pipeline->element("out").ok());
  auto missing = pipeline->element("nobody");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("nobody"), std::string::npos);
  auto not_appsrc = pipeline->app_source("out");
  ASSERT_FALSE(not_appsrc.ok()) << "a fakesink is not an appsrc";
  EXPECT_EQ(not_appsrc.error().code, Errc::invalid_argument);
  EXPECT_EQ(pipeline->app_source("nobody").error().code, Errc::not_found) << "passed up unchanged";
  auto ran = pipeline->run_to_end();
  EXPECT_TRUE(ran.ok()) << ran.error().message;
}

TEST(Gst, AFailureWhileRunningCarriesGStreamersMessage) {
  testing::TempDir dir;
  auto pipeline = gst::Pipeline::parse("filesrc name=in ! fakesink");
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  pipeline->element("in")->set("location", dir.file("does-not-exist.ts"));
  auto ran = pipeline->run_to_end();
  ASSERT_FALSE(ran.ok());
  EXPECT_EQ(ran.error().code, Errc::io);
  EXPECT_NE(ran.error().message.find("in: "), std::string::npos) << "names the element: " << ran.error().message;
  EXPECT_NE(ran.error().message.find("does-not-exist.ts"), std::string::npos) << ran.error().message;
}

TEST(Gst, AnAppSourceFeedsThePipelineToItsEnd) {
  auto pipeline = gst::Pipeline::parse("appsrc name=src format=bytes ! fakesink");
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  auto src = pipeline->app_source("src");
  ASSERT_TRUE(src.ok()) << src.error().message;
  ASSERT_TRUE(pipeline->play().ok());
  const std::vector<std::byte> bytes(188 * 7, std::byte{0x47});
  src->push(bytes);
  src->end_of_stream();
  auto ended = pipeline->wait_for_end();
  EXPECT_TRUE(ended.ok()) << ended.error().message;
}

TEST(Gst, GeneratorReportsAPathItCannotWrite) {
  testing::TempDir dir;
  GeneratorOptions o;
  o.seconds = 1;
  try {
    generate_test_stream(dir.file("no/such/dir/out.ts"), o);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir/out.ts"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("no")));
}

TEST(Gst, PlayerWithAnUnknownSinkSaysSo) {
  ASSERT_EQ(::setenv("USHER_PLAY_VIDEO_SINK", "no_such_video_sink", 1), 0);
  ASSERT_EQ(::setenv("USHER_PLAY_AUDIO_SINK", "fakesink", 1), 0);
  try {
    auto player = stb::open_player();
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_video_sink"), std::string::npos) << e.what();
  }
  ::unsetenv("USHER_PLAY_VIDEO_SINK");
  ::unsetenv("USHER_PLAY_AUDIO_SINK");
}

}  // namespace
}  // namespace usher::streams
