#[test]
fn smoke() {
    let src = std::fs::read_to_string("examples/fraud-detection/alerts.tocsin").unwrap();
    let (file, errs) = tocsin_rules::parse(&src);
    println!("{errs:?}");
    let c = tocsin_rules::check_source(&src, &|_| None);
    println!("{}", tocsin_rules::diagnostic::render("alerts.tocsin", &src, &c.diagnostics, false));
    for a in &c.alerts { println!("{}", serde_json::to_string(&a.config).unwrap()); }
    let f = tocsin_rules::format(&file, &src);
    println!("{f}");
    assert_eq!(f, src);
}
