//! Templates that grow lists or expand shared containers into text (issue 14's last open case):
//! refused before they compile, or stopped by fuel before the text is built. Each of these
//! hung or took gigabytes with minijinja 3.1's fuel alone.

use debias_guard::chat::{ChatMessage, ChatTemplate};
use debias_guard::{Error, PromptBuilder, PromptLayout};
use std::time::{Duration, Instant};

fn chat() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "You rate lessons."),
        ChatMessage::new("user", "Rate this lesson."),
    ]
}

/// Compiles and renders `source`; the error, and how long it took (any hang is a failure).
fn outcome(source: &str) -> (Result<String, Error>, Duration) {
    let start = Instant::now();
    let result = ChatTemplate::new(Some(source), "<s>", "</s>")
        .map(|t| t.with_budget("chat template of hostile.gguf", 4096))
        .and_then(|t| t.render(&chat(), true));
    (result, start.elapsed())
}

/// `source` must be refused by the static check (at compile time) with `needle` in the reason.
fn assert_refused_before_compiling(source: &str, needle: &str) {
    let start = Instant::now();
    let err = ChatTemplate::new(Some(source), "", "").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    match err {
        Error::TemplateBudget { template, reason } => {
            assert_eq!(template, "chat template");
            assert!(reason.contains("template line"), "{reason}");
            assert!(reason.contains(needle), "{reason}");
        }
        e => panic!("expected a template budget refusal, got {e}"),
    }
}

/// `source` compiles but its render runs out of fuel quickly.
fn assert_out_of_fuel(source: &str) {
    let (result, elapsed) = outcome(source);
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    match result {
        Err(Error::TemplateBudget { reason, .. }) => {
            assert!(reason.contains("instructions"), "{reason}")
        }
        other => panic!("expected running out of fuel, got {other:?}"),
    }
}

const NESTED: &str = "{% set a = [1,2,3,4,5,6,7,8,9,10] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}\
{% set c = [b,b,b,b,b,b,b,b,b,b] %}{% set d = [c,c,c,c,c,c,c,c,c,c] %}\
{% set e = [d,d,d,d,d,d,d,d,d,d] %}{% set f = [e,e,e,e,e,e,e,e,e,e] %}\
{% set g = [f,f,f,f,f,f,f,f,f,f] %}{% set h = [g,g,g,g,g,g,g,g,g,g] %}";

#[test]
fn list_doubling_in_a_loop_is_refused() {
    assert_refused_before_compiling(
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}\n{% set ns.l = ns.l + ns.l %}{% endfor %}",
        "line 2",
    );
    assert_refused_before_compiling(
        "{% set ns = namespace(l=messages) %}{% for i in range(64) %}{% set ns.l = ns.l|chain(ns.l) %}{% endfor %}",
        "`chain`",
    );
}

#[test]
fn doubling_through_values_the_loop_hands_back_is_refused() {
    // `loop.cycle` returns its arguments: a join of two of them is a join of two lists.
    assert_refused_before_compiling(
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}\
         {% set ns.l = loop.cycle(ns.l, ns.l) + loop.cycle(ns.l, ns.l) %}{% endfor %}",
        "inside a loop or macro",
    );
    // `fill_with` repeats a container once per missing item: the result is unbounded text.
    assert_refused_before_compiling(
        "{{ '' ~ (range(10)|batch(100000, fill_with=messages)|list) }}",
        "`~`",
    );
}

#[test]
fn list_doubling_in_a_macro_is_refused() {
    assert_refused_before_compiling(
        "{% macro grow(l, n) %}{% if n > 0 %}{{ grow(l + l, n - 1) }}{% endif %}{% endmacro %}{{ grow([1], 40) }}",
        "inside a loop or macro",
    );
}

#[test]
fn unrolled_list_doubling_is_refused_past_the_growth_limit() {
    let mut source = String::from("{% set l = [1] %}");
    for _ in 0..33 {
        source.push_str("{% set l = l + l %}");
    }
    source.push_str("{{ l|length }}");
    assert_refused_before_compiling(&source, "more than 16");
    // Four joins (× 16) are within the limit and render.
    let four = "{% set l = [1] %}{% set l = l + l %}{% set l = l + l %}{% set l = l + l %}{% set l = l + l %}{{ l|length }}";
    assert_eq!(outcome(four).0.unwrap(), "16");
}

#[test]
fn large_list_repeats_are_refused_before_constant_folding() {
    // Folded when the template compiles, before any fuel: 300 MB of text, or 10⁸ comparisons.
    assert_refused_before_compiling("{{ '' ~ ([1] * 100000000) }}", "more than 16");
    assert_refused_before_compiling("{{ 5 in ([1] * 100000000) }}", "more than 16");
    assert_refused_before_compiling(
        "{% for m in messages %}{{ m * loop.index }}{% endfor %}",
        "not a constant",
    );
}

#[test]
fn shared_containers_are_not_turned_into_text_unbounded() {
    // 10⁸ leaves behind 80 list items.
    assert_refused_before_compiling(&format!("{NESTED}{{{{ '' ~ h }}}}"), "`~`");
    assert_refused_before_compiling(&format!("{NESTED}{{{{ h|upper }}}}"), "`upper`");
    assert_refused_before_compiling(&format!("{NESTED}{{{{ h|map('trim')|list }}}}"), "`map`");
    // Printing, `string`, `join`, `tojson` and methods charge the text before building it.
    for use_of_h in [
        "{{ h }}",
        "{{ h|string|length }}",
        "{{ h|join|length }}",
        "{{ h|tojson|length }}",
        "{{ ','.join(h)|length }}",
        "{{ raise_exception(h) }}",
    ] {
        assert_out_of_fuel(&format!("{NESTED}{use_of_h}"));
    }
}

#[test]
fn chat_templates_that_join_strings_and_messages_still_render() {
    let sources = [
        // A system turn put in front of the messages: one list join, outside any loop.
        "{% set turns = [{'role': 'system', 'content': 'Be brief.'}] + messages %}\
         {% for m in turns %}<|{{ m.role }}|>{{ m.content }}{% endfor %}",
        // String joins with `+` and `~` inside the loop, on message fields and tokens.
        "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'].strip() }}\
         {{ '\\n' ~ m.content ~ eos_token }}{% endfor %}",
        // Namespaces carrying strings, slicing, filters on the messages.
        "{% set ns = namespace(system='') %}{% for m in messages %}{% if m.role == 'system' %}\
         {% set ns.system = ns.system + m.content %}{% endif %}{% endfor %}[{{ ns.system }}]\
         {% for m in messages[1:]|selectattr('role', 'equalto', 'user') %}{{ m.content|trim }}{% endfor %}\
         {{ messages|map(attribute='content')|join(' / ') }}{{ messages|tojson }}",
        // Appending one item per turn (`acc + [item]`), in a loop and in a namespace.
        "{% set acc = namespace(kept=[], ids=[]) %}{% for m in messages %}\
         {% set local = [] %}{% set local = local + [m.content] %}\
         {% if m.role != 'tool' %}{% set acc.kept = acc.kept + [m] %}{% endif %}\
         {% set acc.ids = acc.ids + [m.role] %}{% endfor %}\
         {% for m in acc.kept %}{{ m.content }}|{% endfor %}{{ acc.ids|length }}",
        // A macro that renders text, split pipelines, and the messages replaced by a slice.
        "{% macro text_of(c) %}{% if c is string %}{{ c }}{% else %}{% for part in c %}{{ part }}{% endfor %}{% endif %}{% endmacro %}\
         {% set messages = messages[1:] if messages[0].role == 'system' else messages %}\
         {% for m in messages %}{% set body = text_of(m.content) %}\
         {% set tail = (body.split('</think>')|last).strip() %}{{ '<' ~ m.role ~ '>' ~ tail }}\
         {% for k, v in {'n': loop.index}.items() %}{{ k }}={{ v|tojson }}{% endfor %}{% endfor %}",
    ];
    for source in sources {
        let (result, _) = outcome(source);
        let text = result.unwrap_or_else(|e| panic!("{source}: {e}"));
        assert!(text.contains("Rate this lesson."), "{source}: {text}");
    }
}

#[test]
fn prompt_layouts_get_the_same_check() {
    let layout = PromptLayout {
        user_template: "{% set l = [transcript] %}{% for i in range(40) %}{% set l = l + l %}{% endfor %}{{ l|length }}".into(),
        ..PromptLayout::default()
    };
    match PromptBuilder::new(layout) {
        Err(Error::TemplateBudget { template, reason }) => {
            assert_eq!(template, "prompt layout user_template");
            assert!(reason.contains("inside a loop or macro"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The default layout (a map of levels, printed item by item) passes.
    PromptBuilder::new(PromptLayout::default()).unwrap();
}

#[test]
fn chains_too_deep_to_compile_are_refused_before_parsing() {
    // 60,000 links overflowed the stack in minijinja's compiler and aborted the process;
    // each of these is refused by counting tokens, whatever the operator.
    for (head, link) in [("x", " + x"), ("x", " ~ x"), ("x", "|trim"), ("x", ".a")] {
        let source = format!("{{{{ {head}{} }}}}", link.repeat(60_000));
        assert_refused_before_compiling(&source, "tokens");
    }
    let elifs = format!(
        "{{% if x %}}a{}{{% endif %}}",
        "{% elif x %}a".repeat(70_000)
    );
    assert_refused_before_compiling(&elifs, "`elif` branches");
    // Chains of a few hundred links, and many short `elif`s, still compile and render.
    let long_sum = format!("{{{{ 0{} }}}}", " + 1".repeat(400));
    assert_eq!(outcome(&long_sum).0.unwrap(), "400");
    let many_elifs = format!(
        "{{% if messages|length == 0 %}}none{}{{% else %}}{{{{ messages|length }}}}{{% endif %}}",
        "{% elif messages|length == 99 %}x".repeat(500)
    );
    assert_eq!(outcome(&many_elifs).0.unwrap(), "2");
}

#[test]
fn the_check_is_linear_in_the_template() {
    // Near the 1 MiB template limit: tags at the token cap (long chains) and a chain of names
    // bound to each other in reverse order (one link per round of inference). Each must be
    // checked in well under the per-input time the fuzzer allows (10 s), not in time squared.
    let tag = format!("{{{{ x{} }}}}", " + x".repeat(490));
    let chains = tag.repeat((1 << 20) / tag.len() - 1);
    compiles_within_10_s(&chains).unwrap();
    let names: String = (0..40_000)
        .map(|i| format!("{{% set a{i} = a{} %}}", i + 1))
        .chain(std::iter::once(
            "{% set a40000 = [1] %}{{ a0 + a0 }}".to_string(),
        ))
        .collect();
    // `a0` is a list (through the whole chain): one join outside loops is allowed.
    compiles_within_10_s(&names).unwrap();
}

/// `ChatTemplate::new` of `source`, which must return within 10 s (a hang is a failure).
fn compiles_within_10_s(source: &str) -> Result<ChatTemplate, Error> {
    let start = Instant::now();
    let result = ChatTemplate::new(Some(source), "", "");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    result
}
