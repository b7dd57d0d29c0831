//! Glob patterns on entity ids and names: what entity selectors, `where` filters and activation
//! queries share. It lives in the model, the ground floor, so that the engine, the rules and the
//! stores all import it downwards.

/// Glob matching with `*` (any run) and `?` (one character), iterative with backtracking to the
/// last `*`: linear in practice, and no pattern makes it blow up.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("ep*", "ep1.app.res"));
        assert!(glob_match("*.res", "ep1.app.res"));
        assert!(glob_match("ep?.*", "ep1.app.res"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("ep2*", "ep1.app.res"));
        assert!(!glob_match("a*b*c", "aXbY"));
        assert!(glob_match(&"*a".repeat(20), &"a".repeat(40)));
    }
}
