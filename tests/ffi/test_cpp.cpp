// The C++ wrapper on the tiny model: every method, value types, and exceptions that carry the
// C status. Built with -Werror and run under AddressSanitizer + UBSan.
//
// Usage: test_cpp TINY_MODEL.gguf SCRATCH_DIR
#include <atomic>
#include "debias_guard.hpp"

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace dg = debias_guard;

static int failures = 0;

#define EXPECT(cond)                                                                \
    do {                                                                            \
        if (!(cond)) {                                                              \
            std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                             \
        }                                                                           \
    } while (0)

// Requires `f` to throw dg::Error with status `want`.
static void expect_error(dg_status_t want, const std::function<void()> &f, int line) {
    try {
        f();
        std::fprintf(stderr, "line %d: expected status %d, nothing thrown\n", line, (int)want);
        failures++;
    } catch (const dg::Error &e) {
        if (e.status() != want) {
            std::fprintf(stderr, "line %d: expected status %d, got %d: %s\n", line, (int)want,
                         (int)e.status(), e.what());
            failures++;
        }
    }
}
#define EXPECT_ERROR(want, body) expect_error(want, [&] { body; }, __LINE__)

static const char *TRANSCRIPT =
    "TEACHER: What do you notice about these two fractions?\n"
    "STUDENT: The bottom numbers are different.\n"
    "TEACHER: Why might that matter when we compare them?\n";

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s TINY_MODEL.gguf SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    const std::string scratch = argv[2];
    EXPECT(dg::version() == DG_VERSION_STRING);

    EXPECT_ERROR(DG_STATUS_IO, dg::Model::open(scratch + "/missing.gguf"));
    EXPECT_ERROR(DG_STATUS_INVALID_ARGUMENT, dg::Model::open(std::string("a\0b", 3)));
    dg::ModelOptions bad;
    bad.adapter_path = scratch + "/no-adapter";
    EXPECT_ERROR(DG_STATUS_IO, dg::Model::open(argv[1], bad));

    dg::ModelOptions options;
    options.threads = 2;
    const dg::Model model = dg::Model::open(argv[1], options);
    dg::ModelInfo info = model.info();
    EXPECT(info.architecture == "llama" && info.threads == 2 && info.context_length == 4096);

    // Adapters: the tiny model's adapter sits next to it.
    std::string adapter_dir = argv[1];
    adapter_dir = adapter_dir.substr(0, adapter_dir.rfind('/') + 1) + "tiny-adapter";
    model.load_adapter("debias", adapter_dir);
    EXPECT_ERROR(DG_STATUS_ADAPTER_INVALID, model.load_adapter("debias", adapter_dir));
    EXPECT_ERROR(DG_STATUS_ADAPTER_INVALID, model.with_adapter("nope"));
    {
        const dg::Model tuned = model.with_adapter("debias");
        dg::BiasDelta ab = model.adapter_delta(TRANSCRIPT, "teacher_uptake", "debias");
        std::vector<dg::Distribution> got = tuned.score(TRANSCRIPT, {"teacher_uptake"});
        EXPECT(std::fabs(got[0].expected - ab.contextual_expected) < 1e-9);
        EXPECT(std::fabs(ab.delta) > 1e-6);
    }

    dg::Rubric builtin = dg::Rubric::builtin();
    EXPECT(builtin.item_ids().size() == 3);
    EXPECT_ERROR(DG_STATUS_CONFIG, dg::Rubric::parse("{"));
    EXPECT_ERROR(DG_STATUS_IO, dg::Rubric::load(scratch + "/none.json"));
    dg::Rubric custom = dg::Rubric::parse(
        R"({"version": 1, "items": [{"id": "pacing", "name": "Pacing", "description": "Pace.",
            "question": "How well paced is the lesson?", "labels": ["low", "mid", "high"]}]})");

    std::vector<dg::Distribution> all = model.score(TRANSCRIPT);
    EXPECT(all.size() == 3 && all[0].item_id == "instructional_dialogue");
    EXPECT(all[0].labels.size() == 7 && all[0].argmax_label() == all[0].labels[all[0].argmax]);
    double sum = 0;
    for (double p : all[0].probs) sum += p;
    EXPECT(std::fabs(sum - 1.0) < 1e-9);
    std::vector<dg::Distribution> pacing =
        model.score(TRANSCRIPT, {"pacing"}, {}, false, &custom);
    EXPECT(pacing.size() == 1 && pacing[0].labels[2] == "high" && pacing[0].values[2] == 3.0);
    std::vector<std::string_view> ids = {"teacher_uptake", "student_reasoning"};
    std::vector<dg::Distribution> two = model.score(
        TRANSCRIPT, ids, std::string_view("The teacher has taught for 25 years."), true);
    EXPECT(two.size() == 2 && two[0].item_id == "teacher_uptake");
    EXPECT_ERROR(DG_STATUS_NOT_FOUND, model.score(TRANSCRIPT, {"nope"}));
    EXPECT_ERROR(DG_STATUS_INVALID_ARGUMENT, model.score(""));
    EXPECT_ERROR(DG_STATUS_INVALID_UTF8, model.score("TEACHER: caf\xc3"));
    EXPECT_ERROR(DG_STATUS_INVALID_ARGUMENT,
                 model.score(TRANSCRIPT, {}, std::string_view("a\0b", 3)));

    const std::string_view contexts[] = {"The teacher has taught for 25 years.",
                                         "The room has a window."};
    dg::DeltaBatch batch = model.bias_deltas(TRANSCRIPT, "student_reasoning", contexts);
    EXPECT(batch.deltas.size() == 2 && batch.contextual.size() == 2);
    EXPECT(batch.tokens_evaluated < batch.tokens_requested);
    dg::BiasDelta one = model.bias_delta(TRANSCRIPT, "student_reasoning", contexts[0]);
    EXPECT(std::fabs(one.delta - batch.deltas[0].delta) < 1e-5);
    EXPECT_ERROR(DG_STATUS_INVALID_ARGUMENT,
                 model.bias_deltas(TRANSCRIPT, "student_reasoning", {}));

    std::vector<dg::CheckResult> checks = model.check(TRANSCRIPT, "I think this teacher is great.");
    EXPECT(checks.size() == 3);
    for (const dg::CheckResult &c : checks) EXPECT(c.flagged == (c.delta.abs_delta >= 0.5));
    dg::CheckOptions never;
    never.abs_threshold = 1e9;
    EXPECT(!model.check(TRANSCRIPT, "I think so.", {"teacher_uptake"}, never).at(0).flagged);
    never.abs_threshold = -1;
    EXPECT_ERROR(DG_STATUS_INVALID_ARGUMENT, model.check(TRANSCRIPT, "x", {}, never));

    dg::AuditOptions ao;
    ao.split = DG_SPLIT_HELDOUT;
    ao.mitigation_baseline = true;
    ao.transcript_name = "fractions.txt";
    dg::Audit audit = model.audit(TRANSCRIPT, {"instructional_dialogue"}, ao);
    EXPECT(audit.items.size() == 1 && audit.items[0].mitigated.has_value());
    EXPECT(audit.items[0].plain.categories.size() == 7);
    EXPECT(audit.flagged == (audit.n_flags > 0));
    EXPECT(audit.report_json.find("\"fractions.txt\"") != std::string::npos);
    dg::Audit copy = audit;  // copies share the C object behind write_html
    copy.write_html(scratch + "/cpp-report.html");
    EXPECT_ERROR(DG_STATUS_IO, copy.write_html(scratch + "/cpp-report.html/under-a-file.html"));
    EXPECT_ERROR(DG_STATUS_INVALID_ARGUMENT, copy.write_html(std::string("a\0b", 3)));
    ao.split = static_cast<dg_split_t>(9);
    EXPECT_ERROR(DG_STATUS_INVALID_ARGUMENT, model.audit(TRANSCRIPT, {}, ao));

    // Progress reaches its total in order; false, an exception or a set flag cancels.
    dg::AuditOptions po;
    std::size_t last = 0, total = 0, calls = 0;
    bool in_order = true;
    po.progress = [&](std::size_t d, std::size_t t) {
        in_order = in_order && d >= last && (calls == 0 || t == total);
        last = d;
        total = t;
        ++calls;
        return true;
    };
    model.audit(TRANSCRIPT, {"instructional_dialogue"}, po);
    EXPECT(calls >= 2 && in_order && total > 0 && last == total);
    po.mode = DG_AUDIT_MODE_REASONED;
    po.max_reasoning_tokens = 48;
    po.progress = [](std::size_t, std::size_t) { return false; };
    EXPECT_ERROR(DG_STATUS_CANCELLED, model.audit(TRANSCRIPT, {"instructional_dialogue"}, po));
    po.progress = [](std::size_t, std::size_t) -> bool { throw std::logic_error("from progress"); };
    bool rethrown = false;
    try {
        model.audit(TRANSCRIPT, {"instructional_dialogue"}, po);
    } catch (const std::logic_error &e) {
        rethrown = std::string(e.what()) == "from progress";
    }
    EXPECT(rethrown);
    std::atomic<std::int32_t> cancel{1};
    po.progress = nullptr;
    po.cancel = &cancel;
    EXPECT_ERROR(DG_STATUS_CANCELLED, model.audit(TRANSCRIPT, {"instructional_dialogue"}, po));

    // One const Model shared by threads: the same results as a serial call.
    std::vector<dg::Distribution> serial = model.score(TRANSCRIPT, {"teacher_uptake"});
    std::vector<std::thread> threads;
    std::vector<double> got(4);
    for (int i = 0; i < 4; i++)
        threads.emplace_back(
            [&, i] { got[i] = model.score(TRANSCRIPT, {"teacher_uptake"})[0].expected; });
    for (std::thread &t : threads) t.join();
    for (double g : got) EXPECT(g == serial[0].expected);

    dg::Model moved = dg::Model::open(argv[1]);
    dg::Model target = std::move(moved);
    EXPECT(target.get() != nullptr && moved.get() == nullptr);

    if (failures) {
        std::fprintf(stderr, "test_cpp: %d check(s) failed\n", failures);
        return 1;
    }
    std::printf("test_cpp: all checks passed\n");
    return 0;
}
