// The one place Usher calls GStreamer: the library initialised once, a pipeline built from a launch
// description and torn down (state NULL, unreferenced) on every path, its named elements and its bus
// as owned references, and an appsrc to push packets into. Failures are usher::Result errors carrying
// GStreamer's own message: Errc::invalid_argument for a description GStreamer cannot build or an
// element that is not what was asked, Errc::not_found for a missing element, Errc::io for a pipeline
// that cannot start or stops on an error.
//
//   auto pipeline = gst::Pipeline::parse("videotestsrc num-buffers=25 ! x264enc ! filesink name=out");
//   if (!pipeline) throw std::runtime_error(pipeline.error().message);
//   pipeline->element("out")->set("location", path);
//   if (auto done = pipeline->run_to_end(); !done) ...;
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "usher/core/result.h"

// GStreamer's types, declared so that users of this header need not include gst/gst.h.
using GstElement = struct _GstElement;

namespace usher::streams::gst {

// Initialises GStreamer once per process (later calls do nothing), from whichever thread comes first.
void ensure_initialized();

// One owned reference to an element (or a bin): unreferenced when it goes.
class Element {
 public:
  Element(const Element&) = delete;
  Element& operator=(const Element&) = delete;
  Element(Element&&) noexcept = default;
  Element& operator=(Element&&) noexcept = default;
  ~Element() = default;

  // Sets a string property (for example a filesink's "location").
  void set(const char* property, const std::string& value);
  [[nodiscard]] GstElement* get() const { return element_.get(); }

 private:
  friend class Pipeline;
  struct Unref {
    void operator()(GstElement* e) const;
  };
  explicit Element(GstElement* owned) : element_(owned) {}
  std::unique_ptr<GstElement, Unref> element_;
};

// An appsrc element, to push bytes into a running pipeline.
class AppSource {
 public:
  // Pushes a copy of `bytes` (waits while the appsrc is full when it blocks). The pipeline's error,
  // if it stopped, shows in Pipeline::wait_for_end.
  void push(std::span<const std::byte> bytes);
  // No more data: the pipeline drains and posts its end of stream.
  void end_of_stream();

 private:
  friend class Pipeline;
  explicit AppSource(Element element) : element_(std::move(element)) {}
  Element element_;
};

// A pipeline made with gst_parse_launch. Destroying it sets it to NULL (stopping its threads) first.
class Pipeline {
 public:
  // Builds the pipeline from a gst-launch description. A description GStreamer cannot build (an
  // unknown element, a bad link, a syntax error) is an Error with GStreamer's message, nothing left running.
  static Result<Pipeline> parse(const std::string& description);

  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  Pipeline(Pipeline&&) noexcept = default;
  Pipeline& operator=(Pipeline&&) noexcept;
  ~Pipeline();

  // The element named `name` in the description ("filesink name=out"); an Error if there is none.
  Result<Element> element(const std::string& name);
  // The appsrc named `name`; an Error if there is none or it is not an appsrc.
  Result<AppSource> app_source(const std::string& name);

  // Starts the pipeline. An Error (with GStreamer's message when it posted one) if it cannot start.
  Status play();
  // Waits for the end of the stream or the first error, whichever comes first, then stops the
  // pipeline. An error comes back with GStreamer's message (and the element that posted it).
  Status wait_for_end();
  // Starts, then waits for the end: a pipeline whose sources end by themselves.
  Status run_to_end();
  // Stops the pipeline (state NULL). Done by the destructor too.
  void stop();

 private:
  explicit Pipeline(Element pipeline) : pipeline_(std::move(pipeline)) {}
  // The first error message on the bus, if any, without waiting.
  std::string pending_error();
  Element pipeline_;
};

}  // namespace usher::streams::gst
