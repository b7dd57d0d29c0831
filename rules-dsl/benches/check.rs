//! `tocsin check` speed: parse and check+compile a generated file of 10,000 alerts (the goal is
//! ≤ 100 ms for the whole check), and parse throughput in MB/s. The generated file is also
//! written to `target/bench-10k.tocsin`, to time the command itself (see BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A realistic file: a template, a custom and a calculated event, and `n` alerts of four
/// shapes (drift with a filter and per-entity window, job failures from a built-in template,
/// manual concept alerts, and alerts on the calculated event), each with notifications.
pub fn generate(n: usize) -> String {
    let mut s = String::from(
        "project bench\n\ntemplate watch {\n  severity high\n  notify slack \"team\" {\n    webhook secret(\"SLACK\")\n    cooldown 15m\n  }\n}\n\nevent job-cpu on job\n\nevent cpu-high from job-cpu {\n  where value.cpu > 70\n  for 1h\n}\n",
    );
    for i in 0..n {
        let alert = match i % 4 {
            0 => format!(
                "\n# Drift on endpoint group {i}.\nalert drift-{i} extends watch {{\n  summary \"Model {{{{project}}}}/{{{{entity}}}} drifts ({{{{value.result_value}}}})\"\n  on data_drift_detected, data_drift_suspected\n  entity model-endpoint-result \"ep{i}.*\"\n  where value.result_value > 0.7 and not value.app starts_with \"shadow-\"\n  when count >= 3 within 10m per entity\n  notify email \"oncall\" {{\n    to [\"oncall-{i}@example.com\"]\n  }}\n}}\n"
            ),
            1 => format!(
                "\nalert job-{i} extends JobFailed {{\n  entity job \"train-{i}-*\"\n  when count >= 2 within 1h per entity\n  notify webhook \"pager\" {{\n    url secret(\"PAGER\")\n    method post\n  }}\n}}\n"
            ),
            2 => format!(
                "\nalert concept-{i} {{\n  summary \"Concept drift on {{{{entity}}}}\"\n  on concept_drift_detected\n  entity model-endpoint-result \"ep{i}.concept\"\n  severity medium\n  reset manual\n}}\n"
            ),
            _ => format!(
                "\nalert hot-{i} {{\n  on cpu-high\n  entity job \"job-{i}\"\n  severity low\n  cooldown 2h\n}}\n"
            ),
        };
        s.push_str(&alert);
    }
    s
}

fn bench(c: &mut Criterion) {
    let source = generate(10_000);
    let _ = std::fs::create_dir_all("../target");
    let _ = std::fs::write("../target/bench-10k.tocsin", &source);
    let checked = tocsin_rules::check_source(&source, &|_| None);
    assert!(!checked.has_errors(), "the generated file checks");
    assert_eq!(checked.alerts.len(), 10_001);

    let mut g = c.benchmark_group("rules");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(source.len() as u64));
    g.bench_function("parse 10k alerts", |b| {
        b.iter(|| black_box(tocsin_rules::parse(black_box(&source))))
    });
    g.bench_function("pest only", |b| {
        b.iter(|| black_box(tocsin_rules::pest_only(black_box(&source))))
    });
    g.bench_function("check+compile 10k alerts", |b| {
        b.iter(|| black_box(tocsin_rules::check_source(black_box(&source), &|_| None)))
    });
    g.bench_function("format 10k alerts", |b| {
        let (file, _) = tocsin_rules::parse(&source);
        b.iter(|| black_box(tocsin_rules::format(black_box(&file), &source)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
