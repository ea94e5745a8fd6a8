#include "usher/streams/gst.h"

#include <gst/app/gstappsrc.h>
#include <gst/gst.h>

#include <mutex>

namespace usher::streams::gst {
namespace {

struct BusUnref {
  void operator()(GstBus* bus) const { gst_object_unref(bus); }
};
using BusRef = std::unique_ptr<GstBus, BusUnref>;
struct MessageUnref {
  void operator()(GstMessage* message) const { gst_message_unref(message); }
};
using MessageRef = std::unique_ptr<GstMessage, MessageUnref>;
struct ErrorFree {
  void operator()(GError* error) const { g_error_free(error); }
};
using GErrorRef = std::unique_ptr<GError, ErrorFree>;

// "<element>: <message> (<detail>)" for an ERROR message on the bus. The detail is the last line
// of GStreamer's debug text, which names what failed ("No such file ...") where the message is generic.
std::string describe_error(GstMessage* message) {
  GError* raw = nullptr;
  gchar* raw_debug = nullptr;
  gst_message_parse_error(message, &raw, &raw_debug);
  const GErrorRef error(raw);
  const std::string debug = raw_debug != nullptr ? raw_debug : "";
  g_free(raw_debug);
  std::string text = error != nullptr && error->message != nullptr ? error->message : "unknown error";
  const auto last_line = debug.substr(debug.find_last_of('\n') == std::string::npos ? 0 : debug.find_last_of('\n') + 1);
  if (!last_line.empty() && last_line.find(".c(") == std::string::npos) text += " (" + last_line + ")";
  if (GST_MESSAGE_SRC(message) != nullptr) {
    const char* name = GST_OBJECT_NAME(GST_MESSAGE_SRC(message));
    if (name != nullptr) text = std::string(name) + ": " + text;
  }
  return text;
}

}  // namespace

void ensure_initialized() {
  static std::once_flag once;
  std::call_once(once, [] { gst_init(nullptr, nullptr); });
}

void Element::Unref::operator()(GstElement* e) const {
  if (e != nullptr) gst_object_unref(e);
}

void Element::set(const char* property, const std::string& value) { g_object_set(element_.get(), property, value.c_str(), nullptr); }

void AppSource::push(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  GstBuffer* buffer = gst_buffer_new_memdup(bytes.data(), bytes.size());
  gst_app_src_push_buffer(GST_APP_SRC(element_.get()), buffer);  // takes the buffer
}

void AppSource::end_of_stream() { gst_app_src_end_of_stream(GST_APP_SRC(element_.get())); }

Result<Pipeline> Pipeline::parse(const std::string& description) {
  ensure_initialized();
  GError* raw_error = nullptr;
  // Fatal errors leave no element; recoverable ones (an element that could not be linked) leave a
  // partial pipeline, refused all the same.
  GstElement* raw = gst_parse_launch(description.c_str(), &raw_error);
  if (raw != nullptr && g_object_is_floating(raw)) gst_object_ref_sink(raw);  // ours alone, not floating
  Element built(raw);
  const GErrorRef error(raw_error);
  if (error != nullptr) {
    return make_error(Errc::invalid_argument, std::string("GStreamer cannot build the pipeline: ") + error->message);
  }
  if (built.get() == nullptr) return make_error(Errc::invalid_argument, "GStreamer cannot build the pipeline (no message)");
  if (!GST_IS_PIPELINE(built.get())) {
    // A description of one element gives that element alone: put it in a pipeline of its own.
    GstElement* bin = gst_pipeline_new(nullptr);
    gst_object_ref_sink(bin);
    Element pipeline(bin);
    gst_bin_add(GST_BIN(bin), built.get());  // the bin takes a reference of its own
    return Pipeline(std::move(pipeline));
  }
  return Pipeline(std::move(built));
}

Pipeline& Pipeline::operator=(Pipeline&& other) noexcept {
  if (this != &other) {
    stop();
    pipeline_ = std::move(other.pipeline_);
  }
  return *this;
}

Pipeline::~Pipeline() { stop(); }

void Pipeline::stop() {
  if (pipeline_.get() != nullptr) gst_element_set_state(pipeline_.get(), GST_STATE_NULL);
}

Result<Element> Pipeline::element(const std::string& name) {
  GstElement* found = gst_bin_get_by_name(GST_BIN(pipeline_.get()), name.c_str());
  if (found == nullptr) return make_error(Errc::not_found, "the GStreamer pipeline has no element named '" + name + "'");
  return Element(found);
}

Result<AppSource> Pipeline::app_source(const std::string& name) {
  USHER_TRY(auto found, element(name));
  if (!GST_IS_APP_SRC(found.get())) {
    return make_error(Errc::invalid_argument, "the GStreamer element '" + name + "' is not an appsrc");
  }
  return AppSource(std::move(found));
}

std::string Pipeline::pending_error() {
  const BusRef bus(gst_element_get_bus(pipeline_.get()));
  const MessageRef message(gst_bus_pop_filtered(bus.get(), GST_MESSAGE_ERROR));
  return message != nullptr ? describe_error(message.get()) : std::string();
}

Status Pipeline::play() {
  if (gst_element_set_state(pipeline_.get(), GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE) return Ok{};
  auto why = pending_error();
  stop();
  return make_error(Errc::io, "GStreamer cannot start the pipeline: " + (why.empty() ? std::string("state change failed") : why));
}

Status Pipeline::wait_for_end() {
  const BusRef bus(gst_element_get_bus(pipeline_.get()));
  const MessageRef message(
      gst_bus_timed_pop_filtered(bus.get(), GST_CLOCK_TIME_NONE, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR)));
  std::string failure;
  if (message != nullptr && GST_MESSAGE_TYPE(message.get()) == GST_MESSAGE_ERROR) failure = describe_error(message.get());
  stop();
  if (!failure.empty()) return make_error(Errc::io, failure);
  return Ok{};
}

Status Pipeline::run_to_end() {
  USHER_CHECK(play());
  return wait_for_end();
}

}  // namespace usher::streams::gst
