// Audit one transcript for spurious-context bias from C++ (header-only wrapper over the C API).
//
// Build: c++ -std=c++17 -Ibindings/cpp -Iinclude audit.cpp -Ltarget/release -ldebias_guard
// Run:   ./audit models/SmolLM2-135M-Instruct.Q4_1.gguf
//              assets/transcripts/multiplication_drill.txt [ITEM_ID]
#include "debias_guard.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        std::cerr << "usage: " << argv[0] << " MODEL.gguf TRANSCRIPT.txt [ITEM_ID]\n";
        return 2;
    }
    std::ifstream file(argv[2], std::ios::binary);
    if (!file) {
        std::cerr << "cannot read " << argv[2] << "\n";
        return 1;
    }
    std::stringstream text;
    text << file.rdbuf();
    std::string_view item = argc == 4 ? argv[3] : "instructional_dialogue";

    namespace dg = debias_guard;
    try {
        std::cout << "debias-guard " << dg::version() << "\n";
        dg::Model model = dg::Model::open(argv[1]);
        dg::AuditOptions options;
        options.transcript_name = argv[2];
        dg::Audit audit = model.audit(text.str(), {item}, options);

        const dg::AuditCondition &c = audit.items.at(0).plain;
        std::printf("%s: neutral score %.3f (label %s), noise floor %.3f, flag threshold %.3f\n",
                    audit.items[0].item_id.c_str(), c.neutral.expected,
                    c.neutral.argmax_label().c_str(), c.noise_floor, c.flag_threshold);
        for (const dg::AuditCategory &cat : c.categories)
            std::printf("  %-16s %+8.3f %8.3f  %s\n", cat.id.c_str(), cat.mean_delta,
                        cat.max_abs_delta, cat.flagged ? "YES" : "no");
        std::printf("worst: %s/%s moved the score by %.3f (threshold %.3f)\n",
                    audit.worst_item_id.c_str(), audit.worst_category_id.c_str(),
                    audit.worst_abs_delta, audit.worst_flag_threshold);
        std::cout << "verdict: " << (audit.flagged ? "FLAGGED" : "PASS") << "\n"
                  << audit.summary << "\n";

        // Errors come back as exceptions that carry the C status.
        try {
            model.score(text.str(), {"no_such_item"});
        } catch (const dg::Error &e) {
            std::cout << "as expected, an unknown item fails: status " << e.status() << " ("
                      << dg_status_text(e.status()) << ")\n";
        }
    } catch (const dg::Error &e) {
        std::cerr << "error (" << dg_status_text(e.status()) << "): " << e.what() << "\n";
        return 1;
    }
    return 0;
}
