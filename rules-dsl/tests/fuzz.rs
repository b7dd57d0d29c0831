//! A fuzz target for the parser, checker and formatter, as a property test over generated
//! input: mutations of the examples (cut, duplicate, insert tokens, swap lines, truncate) and
//! random text. No input may panic; every input that parses must format to text that parses
//! to the same tree, and formatting must be idempotent. The budget is fixed (and may be raised
//! with `TOCSIN_FUZZ_ITERS`); the seed of a failing case is printed.

use std::path::Path;

use tocsin_rules::diagnostic::render;
use tocsin_rules::{check_source, format, parse};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "alert",
    "template",
    "event",
    "project",
    "extends",
    "on",
    "from",
    "entity",
    "where",
    "when",
    "for",
    "count",
    ">=",
    "within",
    "per",
    "entity",
    "notify",
    "severity",
    "reset",
    "cooldown",
    "summary",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "\"",
    "\\",
    "#",
    "\n",
    " ",
    "value.",
    "and",
    "or",
    "not",
    "secret(\"X\")",
    "10m",
    "0s",
    "99999999999999999999h",
    "-1",
    "1.5",
    "true",
    "null",
    "é",
    "🔔",
    "\"{{entity}}\"",
    "failed",
    "data_drift_detected",
    "job",
    "*",
    "\"*\"",
    "contains",
    "==",
    "\t",
];

fn seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for sub in [
        "examples/fraud-detection",
        "examples/templates",
        "tests/broken",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(sub))
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "tocsin"))
            .collect();
        files.sort();
        out.extend(
            files
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("readable")),
        );
    }
    out
}

fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut s = base.to_owned();
    for _ in 0..1 + rng.below(4) {
        let len = s.len();
        match rng.below(6) {
            0 => {
                let a = boundary(&s, rng.below(len + 1));
                let b = boundary(&s, a + rng.below(40));
                s.replace_range(a..b, "");
            }
            1 => {
                let a = boundary(&s, rng.below(len + 1));
                let token = TOKENS[rng.below(TOKENS.len())];
                s.insert_str(a, token);
            }
            2 => {
                let a = boundary(&s, rng.below(len + 1));
                let b = boundary(&s, a + rng.below(120));
                let piece = s[a..b].to_owned();
                let at = boundary(&s, rng.below(len + 1));
                s.insert_str(at, &piece);
            }
            3 => {
                let mut lines: Vec<&str> = s.lines().collect();
                if lines.len() > 1 {
                    let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(i, j);
                }
                s = lines.join("\n");
            }
            4 => {
                let at = boundary(&s, rng.below(len + 1));
                s.truncate(at);
            }
            _ => {
                s = (0..rng.below(200))
                    .map(|_| TOKENS[rng.below(TOKENS.len())])
                    .collect::<Vec<_>>()
                    .join(if rng.below(2) == 0 { " " } else { "" });
            }
        }
    }
    s
}

#[test]
fn no_input_panics_and_what_parses_formats_to_the_same_tree() {
    let iters: u64 = std::env::var("TOCSIN_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seeds = seeds();
    let (mut parsed_clean, mut checked_clean) = (0, 0);
    for case in 0..iters {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (case + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base);
        let context = format!("case {case} (TOCSIN_FUZZ_ITERS > {case}); input:\n{input}");
        let result = std::panic::catch_unwind(|| {
            let checked = check_source(&input, &|_| Some("https://example.invalid".into()));
            let _ = render("fuzz.tocsin", &input, &checked.diagnostics, false);
            let (file, errors) = parse(&input);
            if !errors.is_empty() {
                return (false, false);
            }
            let formatted = format(&file, &input);
            let (again, errors) = parse(&formatted);
            assert!(
                errors.is_empty(),
                "the formatted text does not parse:\n{formatted}"
            );
            assert_eq!(again, file, "formatting changed the tree:\n{formatted}");
            assert_eq!(
                format(&again, &formatted),
                formatted,
                "fmt is not idempotent"
            );
            (true, !checked.has_errors())
        });
        match result {
            Ok((p, c)) => {
                parsed_clean += usize::from(p);
                checked_clean += usize::from(c);
            }
            Err(_) => panic!("{context}"),
        }
    }
    eprintln!("{iters} inputs: {parsed_clean} parsed clean, {checked_clean} checked clean");
    // The generator must reach past the parser often enough to test the checker too.
    assert!(
        parsed_clean > 0 && checked_clean > 0,
        "{parsed_clean} parsed, {checked_clean} checked clean"
    );
}
