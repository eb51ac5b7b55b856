// debias_guard.hpp: header-only C++17 wrapper of the debias-guard C API (debias_guard.h).
//
// - Handles are move-only RAII objects (Model, Rubric): the C object is freed by the destructor.
// - A failed call throws debias_guard::Error, which carries the C status and its message (a
//   string with a NUL byte inside throws DG_STATUS_INVALID_ARGUMENT before any C call).
// - Strings go in as std::string_view, lists as debias_guard::Span (pointer + size); results
//   come out as value types (Distribution, CheckResult, Audit, ...) that own their data, so
//   nothing returned needs freeing.
// - A const Model may be used by many threads at once, like the C handle.
//
//   debias_guard::Model model = debias_guard::Model::open("model.gguf");
//   auto scores = model.score(transcript, {"instructional_dialogue"});
//   std::cout << scores[0].expected << "\n";
#ifndef DEBIAS_GUARD_HPP
#define DEBIAS_GUARD_HPP

#include <debias_guard.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace debias_guard {

/// A failed call: the C status (`dg_status_t`) and the library's message.
class Error : public std::runtime_error {
public:
    Error(dg_status_t status, const std::string &message)
        : std::runtime_error(message), status_(status) {}

    /// The status code of the failed call (never DG_STATUS_OK).
    dg_status_t status() const noexcept { return status_; }

private:
    dg_status_t status_;
};

/// A read-only view of `size` contiguous values (std::span is C++20), for call arguments.
/// Build it from a braced list (`{"a", "b"}`), a std::vector, a C array, or a pointer and a
/// size. It does not own the values.
template <class T>
class Span {
public:
    constexpr Span() noexcept = default;
    constexpr Span(const T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    // A braced list passed as a call argument lives until the call returns, which is all a
    // Span is for; do not keep a Span made from a braced list in a variable.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winit-list-lifetime"
#endif
    Span(std::initializer_list<T> list) noexcept : data_(list.begin()), size_(list.size()) {}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    Span(const std::vector<T> &v) noexcept : data_(v.data()), size_(v.size()) {}
    template <std::size_t N>
    constexpr Span(const T (&array)[N]) noexcept : data_(array), size_(N) {}

    constexpr const T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const T *begin() const noexcept { return data_; }
    constexpr const T *end() const noexcept { return data_ + size_; }

private:
    const T *data_ = nullptr;
    std::size_t size_ = 0;
};

/// Several strings as a list.
using StringList = Span<std::string_view>;

namespace detail {

struct ModelFree {
    void operator()(dg_model_t *p) const noexcept { dg_model_free(p); }
};
struct RubricFree {
    void operator()(dg_rubric_t *p) const noexcept { dg_rubric_free(p); }
};
struct ScoresFree {
    void operator()(dg_scores_t *p) const noexcept { dg_scores_free(p); }
};
struct BatchFree {
    void operator()(dg_delta_batch_t *p) const noexcept { dg_delta_batch_free(p); }
};
struct ChecksFree {
    void operator()(dg_checks_t *p) const noexcept { dg_checks_free(p); }
};
struct AuditFree {
    void operator()(dg_audit_t *p) const noexcept { dg_audit_free(p); }
};

/// Throws Error for a failed status, releasing the error object. Call it in a statement after
/// the C call (not as `check(dg_x(..., &err), err)`: argument order is unspecified, so `err`
/// could be read before the call writes it).
inline void check(dg_status_t status, dg_error_t *error) {
    if (status == DG_STATUS_OK) return;
    std::string message = error ? dg_error_message(error) : dg_status_text(status);
    dg_error_free(error);
    throw Error(status, message);
}

/// A NUL-terminated copy of `s`; a NUL inside `s` (where C would cut it) throws.
inline std::string owned(std::string_view s, const char *what) {
    if (s.find('\0') != std::string_view::npos)
        throw Error(DG_STATUS_INVALID_ARGUMENT, std::string("`") + what + "` contains a NUL byte");
    return std::string(s);
}

/// NUL-terminated copies of string views, with the `const char *const *` C wants.
class CStrings {
public:
    CStrings(StringList list, const char *what) {
        owned_.reserve(list.size());
        for (std::string_view s : list) owned_.push_back(owned(s, what));
        ptrs_.reserve(owned_.size());
        for (const std::string &s : owned_) ptrs_.push_back(s.c_str());
    }
    const char *const *data() const noexcept { return ptrs_.empty() ? nullptr : ptrs_.data(); }
    std::size_t size() const noexcept { return ptrs_.size(); }

private:
    std::vector<std::string> owned_;
    std::vector<const char *> ptrs_;
};

inline std::string str(const char *s) { return s ? std::string(s) : std::string(); }

}  // namespace detail

/// The library version that is linked (`dg_version()`).
inline std::string version() { return dg_version(); }

/// A label distribution of one rubric item (see dg_distribution_t).
struct Distribution {
    std::string item_id;
    std::vector<std::string> labels;  ///< scale labels, in order
    std::vector<double> values;       ///< numeric value of each label
    std::vector<double> probs;        ///< probability of each label (sums to 1)
    double expected = 0;              ///< sum of probs * values (scale points)
    double label_mass = 0;            ///< label mass before renormalising (0-1)
    std::size_t argmax = 0;           ///< index of the most probable label
    std::size_t prompt_tokens = 0;    ///< tokens in the prompt

    /// The most probable label.
    const std::string &argmax_label() const { return labels.at(argmax); }

    static Distribution from_c(const dg_distribution_t &d) {
        Distribution out;
        out.item_id = detail::str(d.item_id);
        for (std::size_t i = 0; i < d.n_labels; i++) {
            out.labels.emplace_back(d.labels[i]);
            out.values.push_back(d.values[i]);
            out.probs.push_back(d.probs[i]);
        }
        out.expected = d.expected;
        out.label_mass = d.label_mass;
        out.argmax = d.argmax;
        out.prompt_tokens = d.prompt_tokens;
        return out;
    }
};

/// How far one context moves one score (plain C struct: see dg_bias_delta_t).
using BiasDelta = dg_bias_delta_t;

/// Several contexts against one neutral score (see dg_delta_batch_t).
struct DeltaBatch {
    Distribution neutral;
    std::vector<Distribution> contextual;  ///< one per context, in order
    std::vector<BiasDelta> deltas;         ///< one per context, in order
    std::size_t tokens_evaluated = 0;
    std::size_t tokens_requested = 0;
};

/// Options of Model::check (defaults from dg_check_default_options()).
struct CheckOptions {
    double abs_threshold = dg_check_default_options().abs_threshold;  ///< scale points
    bool mitigate = false;
};

/// The runtime check of one rubric item (see dg_check_result_t).
struct CheckResult {
    std::string item_id;
    std::string context;
    Distribution contextual;
    Distribution neutral;
    BiasDelta delta{};
    bool flagged = false;
    double abs_threshold = 0;
};

namespace detail {
/// Calls a std::function progress callback from C; an exception stops the call (it must not
/// cross the C ABI) and is kept to be rethrown after it.
struct ProgressRelay {
    const std::function<bool(std::size_t, std::size_t)> *f;
    std::exception_ptr thrown;

    static bool call(void *self, std::size_t done, std::size_t total) noexcept {
        auto *relay = static_cast<ProgressRelay *>(self);
        try {
            return (*relay->f)(done, total);
        } catch (...) {
            relay->thrown = std::current_exception();
            return false;
        }
    }
};

/// The C view of a cancel flag: a lock-free std::atomic<int32_t> is laid out as an int32_t.
inline const std::int32_t *flag_of(const std::atomic<std::int32_t> *flag) noexcept {
    static_assert(sizeof(std::atomic<std::int32_t>) == sizeof(std::int32_t) &&
                      std::atomic<std::int32_t>::is_always_lock_free,
                  "std::atomic<int32_t> must be a plain lock-free int32_t");
    return reinterpret_cast<const std::int32_t *>(flag);
}
}  // namespace detail

/// Options of Model::audit (defaults from dg_audit_default_options()).
struct AuditOptions {
    std::string probes_path;      ///< empty = built-in catalog
    std::string transcript_name;  ///< empty = "<inline>"
    dg_split_t split = DG_SPLIT_ALL;
    double abs_threshold = dg_audit_default_options().abs_threshold;
    double k = dg_audit_default_options().k;
    bool mitigation_baseline = false;
    dg_audit_mode_t mode = DG_AUDIT_MODE_DIRECT;
    std::uint32_t max_reasoning_tokens = dg_audit_default_options().max_reasoning_tokens;
    double temperature = dg_audit_default_options().temperature;
    double top_p = dg_audit_default_options().top_p;
    std::uint64_t seed = 0;
    /// Called on the calling thread with (done, total) units as the audit moves on (see
    /// dg_audit_options_t.progress); return false to cancel: audit() then throws Error with
    /// DG_STATUS_CANCELLED. An exception it throws cancels the audit and is rethrown by
    /// audit(). Empty = no reports.
    std::function<bool(std::size_t done, std::size_t total)> progress;
    /// Store non-zero from any thread to cancel; nullptr = none. Must outlive the call.
    const std::atomic<std::int32_t> *cancel = nullptr;
};

/// One category under one condition (see dg_audit_category_t).
struct AuditCategory {
    std::string id, name;
    std::size_t wordings = 0;
    double mean_delta = 0, max_abs_delta = 0, high_mean_delta = 0, low_mean_delta = 0;
    double pole_gap = 0, mean_wasserstein = 0;
    std::size_t argmax_changes = 0;
    bool flagged = false;
};

/// One item under one condition (see dg_audit_condition_t).
struct AuditCondition {
    bool mitigated = false;
    Distribution neutral;
    double noise_floor = 0, control_max_abs_delta = 0, flag_threshold = 0;
    bool flagged = false;
    std::vector<AuditCategory> categories;

    static AuditCondition from_c(const dg_audit_condition_t &c) {
        AuditCondition out;
        out.mitigated = c.mitigated;
        out.neutral = Distribution::from_c(c.neutral);
        out.noise_floor = c.noise_floor;
        out.control_max_abs_delta = c.control_max_abs_delta;
        out.flag_threshold = c.flag_threshold;
        out.flagged = c.flagged;
        for (std::size_t i = 0; i < c.n_categories; i++) {
            const dg_audit_category_t &k = c.categories[i];
            out.categories.push_back(AuditCategory{
                k.id, k.name, k.wordings, k.mean_delta, k.max_abs_delta, k.high_mean_delta,
                k.low_mean_delta, k.pole_gap, k.mean_wasserstein, k.argmax_changes, k.flagged});
        }
        return out;
    }
};

/// Results for one rubric item (see dg_audit_item_t).
struct AuditItem {
    std::string item_id;
    AuditCondition plain;
    std::optional<AuditCondition> mitigated;  ///< set when mitigation_baseline was requested
};

/// An audit's outcome (see dg_audit_t). Copyable; copies share the C object that
/// write_html reads.
class Audit {
public:
    bool flagged = false;
    std::size_t n_flags = 0;
    std::string worst_item_id, worst_category_id;
    double worst_abs_delta = 0, worst_flag_threshold = 0, noise_floor = 0;
    std::vector<AuditItem> items;
    std::string summary;
    std::vector<std::string> warnings;
    std::string report_json;  ///< the complete versioned JSON report

    /// Writes the self-contained HTML report to `path`.
    void write_html(std::string_view path) const {
        std::string p = detail::owned(path, "path");
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_audit_write_html(raw_.get(), p.c_str(), &err);
        detail::check(status, err);
    }

    static Audit from_c(dg_audit_t *raw) {
        Audit out;
        out.raw_ = std::shared_ptr<const dg_audit_t>(raw, detail::AuditFree{});
        out.flagged = raw->flagged;
        out.n_flags = raw->n_flags;
        out.worst_item_id = detail::str(raw->worst_item_id);
        out.worst_category_id = detail::str(raw->worst_category_id);
        out.worst_abs_delta = raw->worst_abs_delta;
        out.worst_flag_threshold = raw->worst_flag_threshold;
        out.noise_floor = raw->noise_floor;
        for (std::size_t i = 0; i < raw->n_items; i++) {
            const dg_audit_item_t &it = raw->items[i];
            AuditItem item{it.item_id, AuditCondition::from_c(it.plain), std::nullopt};
            if (it.mitigated) item.mitigated = AuditCondition::from_c(*it.mitigated);
            out.items.push_back(std::move(item));
        }
        out.summary = detail::str(raw->summary);
        for (std::size_t i = 0; i < raw->n_warnings; i++)
            out.warnings.emplace_back(raw->warnings[i]);
        out.report_json.assign(raw->report_json, raw->report_json_len);
        return out;
    }

private:
    std::shared_ptr<const dg_audit_t> raw_;
};

/// A rubric (see dg_rubric_t). Move-only; immutable, so it may be shared by threads.
class Rubric {
public:
    /// The built-in rubric.
    static Rubric builtin() {
        dg_rubric_t *r = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_rubric_builtin(&r, &err);
        detail::check(status, err);
        return Rubric(r);
    }
    /// Reads a rubric JSON file.
    static Rubric load(std::string_view path) {
        std::string p = detail::owned(path, "path");
        dg_rubric_t *r = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_rubric_load(p.c_str(), &r, &err);
        detail::check(status, err);
        return Rubric(r);
    }
    /// Parses rubric JSON text.
    static Rubric parse(std::string_view json) {
        std::string j = detail::owned(json, "json");
        dg_rubric_t *r = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_rubric_parse(j.c_str(), &r, &err);
        detail::check(status, err);
        return Rubric(r);
    }

    /// Item ids, in rubric order.
    std::vector<std::string> item_ids() const {
        std::vector<std::string> ids;
        for (std::size_t i = 0; i < dg_rubric_item_count(get()); i++)
            ids.emplace_back(dg_rubric_item_id(get(), i));
        return ids;
    }

    /// The C handle (owned by this object).
    const dg_rubric_t *get() const noexcept { return handle_.get(); }

private:
    explicit Rubric(dg_rubric_t *r) : handle_(r) {}
    std::unique_ptr<dg_rubric_t, detail::RubricFree> handle_;
};

/// Options of Model::open (defaults from dg_model_default_options()).
struct ModelOptions {
    std::uint32_t threads = 0;        ///< 0 = all cores
    std::uint32_t prefill_chunk = 0;  ///< 0 = library default
    dg_weight_format_t weight_format = DG_WEIGHT_FORMAT_AUTO;
    std::string adapter_path;         ///< PEFT adapter dir run as "default"; empty = none
    std::string prompt_layout_json;   ///< empty = default layout
    std::string prompt_layout_path;   ///< a layout JSON file instead (set at most one)
};

/// Facts about an open model (architecture copied out of dg_model_info_t).
struct ModelInfo {
    std::string architecture;
    std::size_t context_length = 0, vocab_size = 0, threads = 0;
    double load_seconds = 0;
};

/// A loaded model (see dg_model_t). Move-only. Its const methods may be called from many
/// threads at once.
class Model {
public:
    /// Opens a GGUF model file or a Hugging Face model directory.
    static Model open(std::string_view path, const ModelOptions &options = {}) {
        std::string p = detail::owned(path, "path");
        std::string adapter = detail::owned(options.adapter_path, "adapter_path");
        std::string layout = detail::owned(options.prompt_layout_json, "prompt_layout_json");
        std::string layout_path = detail::owned(options.prompt_layout_path, "prompt_layout_path");
        dg_model_options_t o = dg_model_default_options();
        o.threads = options.threads;
        o.prefill_chunk = options.prefill_chunk;
        o.weight_format = options.weight_format;
        o.adapter_path = adapter.empty() ? nullptr : adapter.c_str();
        o.prompt_layout_json = layout.empty() ? nullptr : layout.c_str();
        o.prompt_layout_path = layout_path.empty() ? nullptr : layout_path.c_str();
        dg_model_t *m = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_model_open(p.c_str(), &o, &m, &err);
        detail::check(status, err);
        return Model(m);
    }

    ModelInfo info() const {
        dg_model_info_t i{};
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_model_get_info(get(), &i, &err);
        detail::check(status, err);
        return ModelInfo{i.architecture, i.context_length, i.vocab_size, i.threads, i.load_seconds};
    }

    /// Label distributions of `items` (empty = every item) on `transcript`, optionally with a
    /// `context` sentence; `rubric` null = built-in.
    std::vector<Distribution> score(std::string_view transcript, StringList items = {},
                                    std::optional<std::string_view> context = std::nullopt,
                                    bool mitigate = false, const Rubric *rubric = nullptr) const {
        std::string t = detail::owned(transcript, "transcript");
        std::optional<std::string> c;
        if (context) c.emplace(detail::owned(*context, "context"));
        detail::CStrings ids(items, "items");
        dg_scores_t *raw = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status =
            dg_score(get(), rubric_of(rubric), ids.data(), ids.size(), t.c_str(),
                     c ? c->c_str() : nullptr, mitigate, &raw, &err);
        detail::check(status, err);
        std::unique_ptr<dg_scores_t, detail::ScoresFree> owner(raw);
        std::vector<Distribution> out;
        for (std::size_t i = 0; i < raw->count; i++)
            out.push_back(Distribution::from_c(raw->distributions[i]));
        return out;
    }

    /// How far `context` moves the score of `item`.
    BiasDelta bias_delta(std::string_view transcript, std::string_view item,
                         std::string_view context, bool mitigate = false,
                         const Rubric *rubric = nullptr) const {
        std::string t = detail::owned(transcript, "transcript");
        std::string i = detail::owned(item, "item");
        std::string c = detail::owned(context, "context");
        BiasDelta d{};
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_bias_delta(get(), rubric_of(rubric), i.c_str(), t.c_str(),
                                                 c.c_str(), mitigate, &d, &err);
        detail::check(status, err);
        return d;
    }

    /// Loads a PEFT LoRA adapter directory under `name` (shared by every handle on these
    /// weights; the base is not copied).
    void load_adapter(std::string_view name, std::string_view dir) const {
        std::string n = detail::owned(name, "name");
        std::string d = detail::owned(dir, "dir");
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_model_load_adapter(get(), n.c_str(), d.c_str(), &err);
        detail::check(status, err);
    }

    /// Removes adapter `name` from these weights (handles that run it keep it).
    void unload_adapter(std::string_view name) const {
        std::string n = detail::owned(name, "name");
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_model_unload_adapter(get(), n.c_str(), &err);
        detail::check(status, err);
    }

    /// A new handle on the same weights that runs adapter `name` (nullopt = the base model).
    Model with_adapter(std::optional<std::string_view> name) const {
        std::optional<std::string> n;
        if (name) n.emplace(detail::owned(*name, "name"));
        dg_model_t *m = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status =
            dg_model_with_adapter(get(), n ? n->c_str() : nullptr, &m, &err);
        detail::check(status, err);
        return Model(m);
    }

    /// `item` scored on the base model (`neutral_*`) and with adapter `name` (`contextual_*`).
    BiasDelta adapter_delta(std::string_view transcript, std::string_view item,
                            std::string_view name,
                            std::optional<std::string_view> context = std::nullopt,
                            bool mitigate = false, const Rubric *rubric = nullptr) const {
        std::string t = detail::owned(transcript, "transcript");
        std::string i = detail::owned(item, "item");
        std::string n = detail::owned(name, "name");
        std::optional<std::string> c;
        if (context) c.emplace(detail::owned(*context, "context"));
        BiasDelta d{};
        dg_error_t *err = nullptr;
        const dg_status_t status =
            dg_adapter_delta(get(), rubric_of(rubric), i.c_str(), t.c_str(),
                             c ? c->c_str() : nullptr, mitigate, n.c_str(), &d, &err);
        detail::check(status, err);
        return d;
    }

    /// Several contexts against one neutral score, in one pass.
    DeltaBatch bias_deltas(std::string_view transcript, std::string_view item,
                           StringList contexts, bool mitigate = false,
                           const Rubric *rubric = nullptr) const {
        std::string t = detail::owned(transcript, "transcript");
        std::string i = detail::owned(item, "item");
        detail::CStrings cs(contexts, "contexts");
        dg_delta_batch_t *raw = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status =
            dg_bias_deltas(get(), rubric_of(rubric), i.c_str(), t.c_str(), cs.data(), cs.size(),
                           mitigate, &raw, &err);
        detail::check(status, err);
        std::unique_ptr<dg_delta_batch_t, detail::BatchFree> owner(raw);
        DeltaBatch out;
        out.neutral = Distribution::from_c(raw->neutral);
        for (std::size_t k = 0; k < raw->count; k++) {
            out.contextual.push_back(Distribution::from_c(raw->contextual[k]));
            out.deltas.push_back(raw->deltas[k]);
        }
        out.tokens_evaluated = raw->tokens_evaluated;
        out.tokens_requested = raw->tokens_requested;
        return out;
    }

    /// Runtime check of `context` on `items` (empty = every item).
    std::vector<CheckResult> check(std::string_view transcript, std::string_view context,
                                   StringList items = {}, const CheckOptions &options = {},
                                   const Rubric *rubric = nullptr) const {
        std::string t = detail::owned(transcript, "transcript");
        std::string c = detail::owned(context, "context");
        detail::CStrings ids(items, "items");
        dg_check_options_t o{options.abs_threshold, options.mitigate};
        dg_checks_t *raw = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_check(get(), rubric_of(rubric), ids.data(), ids.size(),
                                            t.c_str(), c.c_str(), &o, &raw, &err);
        detail::check(status, err);
        std::unique_ptr<dg_checks_t, detail::ChecksFree> owner(raw);
        std::vector<CheckResult> out;
        for (std::size_t k = 0; k < raw->count; k++) {
            const dg_check_result_t &r = raw->results[k];
            out.push_back(CheckResult{r.item_id, r.context, Distribution::from_c(r.contextual),
                                      Distribution::from_c(r.neutral), r.delta, r.flagged,
                                      r.abs_threshold});
        }
        return out;
    }

    /// Audits `items` (empty = every item) on `transcript` against the probe catalog.
    Audit audit(std::string_view transcript, StringList items = {},
                const AuditOptions &options = {}, const Rubric *rubric = nullptr) const {
        std::string t = detail::owned(transcript, "transcript");
        std::string probes = detail::owned(options.probes_path, "probes_path");
        std::string name = detail::owned(options.transcript_name, "transcript_name");
        detail::CStrings ids(items, "items");
        dg_audit_options_t o = dg_audit_default_options();
        o.probes_path = probes.empty() ? nullptr : probes.c_str();
        o.transcript_name = name.empty() ? nullptr : name.c_str();
        o.split = options.split;
        o.abs_threshold = options.abs_threshold;
        o.k = options.k;
        o.mitigation_baseline = options.mitigation_baseline;
        o.mode = options.mode;
        o.max_reasoning_tokens = options.max_reasoning_tokens;
        o.temperature = options.temperature;
        o.top_p = options.top_p;
        o.seed = options.seed;
        detail::ProgressRelay relay{&options.progress, nullptr};
        if (options.progress) {
            o.progress = &detail::ProgressRelay::call;
            o.progress_user_data = &relay;
        }
        o.cancel = detail::flag_of(options.cancel);
        dg_audit_t *raw = nullptr;
        dg_error_t *err = nullptr;
        const dg_status_t status = dg_audit(get(), rubric_of(rubric), ids.data(), ids.size(),
                                            t.c_str(), &o, &raw, &err);
        if (relay.thrown) {
            dg_error_free(err);
            std::rethrow_exception(relay.thrown);
        }
        detail::check(status, err);
        return Audit::from_c(raw);
    }

    /// The C handle (owned by this object).
    const dg_model_t *get() const noexcept { return handle_.get(); }

private:
    explicit Model(dg_model_t *m) : handle_(m) {}
    static const dg_rubric_t *rubric_of(const Rubric *r) noexcept { return r ? r->get() : nullptr; }
    std::unique_ptr<dg_model_t, detail::ModelFree> handle_;
};

}  // namespace debias_guard

#endif  // DEBIAS_GUARD_HPP
