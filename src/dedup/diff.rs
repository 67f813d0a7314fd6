//! Compact word diffs that explain `near` and `contained` findings:
//! `[-removed-]{+added+}` over whitespace-separated words of the *original*
//! texts (so typography, case and accent changes are visible), with long
//! unchanged stretches elided to a little context.

/// Unchanged words kept on each side of a change.
const CONTEXT: usize = 3;
/// Longest removed/added run shown in full; longer runs keep their first
/// words and an ellipsis.
const MAX_RUN: usize = 12;
/// Above this many DP cells the middle part is shown as one replacement
/// rather than aligned (bounds time and memory at 16 MB).
const MAX_CELLS: usize = 4_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Eq,
    Del,
    Ins,
}

/// Word diff from `a` to `b`, at most `max_len` characters (an ellipsis marks
/// a cut). Returns an empty string when both have the same word sequence
/// (they differ at most in spacing).
pub fn word_diff(a: &str, b: &str, max_len: usize) -> String {
    let wa: Vec<&str> = a.split_whitespace().collect();
    let wb: Vec<&str> = b.split_whitespace().collect();
    if wa == wb {
        return String::new();
    }
    let ops = align(&wa, &wb);
    truncate(&render(&ops), max_len)
}

/// Minimal edit script (LCS) as (op, word) pairs.
fn align<'s>(wa: &[&'s str], wb: &[&'s str]) -> Vec<(Op, &'s str)> {
    let pre = wa.iter().zip(wb).take_while(|(x, y)| x == y).count();
    let suf = wa[pre..]
        .iter()
        .rev()
        .zip(wb[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&wa[pre..wa.len() - suf], &wb[pre..wb.len() - suf]);
    let mut ops: Vec<(Op, &str)> = wa[..pre].iter().map(|w| (Op::Eq, *w)).collect();
    let (n, m) = (ma.len(), mb.len());
    if n == 0 || m == 0 || (n + 1) * (m + 1) > MAX_CELLS {
        ops.extend(ma.iter().map(|w| (Op::Del, *w)));
        ops.extend(mb.iter().map(|w| (Op::Ins, *w)));
    } else {
        // lcs[i][j] = LCS length of ma[i..] and mb[j..]; walking forward
        // from (0, 0) then yields the script in reading order.
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && ma[i] == mb[j] {
                ops.push((Op::Eq, ma[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                // Deletions before insertions on ties: `[-old-]{+new+}`
                // reads better than the reverse.
                ops.push((Op::Del, ma[i]));
                i += 1;
            } else {
                ops.push((Op::Ins, mb[j]));
                j += 1;
            }
        }
    }
    ops.extend(wa[wa.len() - suf..].iter().map(|w| (Op::Eq, *w)));
    ops
}

fn render(ops: &[(Op, &str)]) -> String {
    // Split into runs of equal op.
    let mut runs: Vec<(Op, Vec<&str>)> = Vec::new();
    for &(op, w) in ops {
        match runs.last_mut() {
            Some((o, ws)) if *o == op => ws.push(w),
            _ => runs.push((op, vec![w])),
        }
    }
    let last = runs.len().saturating_sub(1);
    let mut parts: Vec<String> = Vec::new();
    for (k, (op, ws)) in runs.iter().enumerate() {
        match op {
            Op::Eq => {
                let (first, end) = (k == 0, k == last);
                let keep_head = if first { 0 } else { CONTEXT };
                let keep_tail = if end { 0 } else { CONTEXT };
                if ws.len() <= keep_head + keep_tail {
                    parts.push(ws.join(" "));
                } else {
                    let mut s = String::new();
                    if keep_head > 0 {
                        s.push_str(&ws[..keep_head].join(" "));
                        s.push(' ');
                    }
                    s.push('…');
                    if keep_tail > 0 {
                        s.push(' ');
                        s.push_str(&ws[ws.len() - keep_tail..].join(" "));
                    }
                    parts.push(s);
                }
            }
            Op::Del => parts.push(format!("[-{}-]", clip(ws))),
            Op::Ins => parts.push(format!("{{+{}+}}", clip(ws))),
        }
    }
    // A deletion directly followed by an insertion is one replacement: no
    // space between them keeps `[-old-]{+new+}` visually paired.
    let mut out = String::new();
    for (k, p) in parts.iter().enumerate() {
        if k > 0 && !(runs[k - 1].0 == Op::Del && runs[k].0 == Op::Ins) {
            out.push(' ');
        }
        out.push_str(p);
    }
    out
}

fn clip(ws: &[&str]) -> String {
    if ws.len() <= MAX_RUN {
        ws.join(" ")
    } else {
        format!(
            "{} … ({} more words)",
            ws[..MAX_RUN - 2].join(" "),
            ws.len() - (MAX_RUN - 2)
        )
    }
}

pub(super) fn truncate(s: &str, max_len: usize) -> String {
    if s.chars().count() <= max_len {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_len.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_is_paired_and_context_elided() {
        let a = "un deux trois quatre cinq six sept huit neuf dix onze douze";
        let b = "un deux trois quatre cinq six SEPT huit neuf dix onze douze";
        assert_eq!(
            word_diff(a, b, 200),
            "… quatre cinq six [-sept-]{+SEPT+} huit neuf dix …"
        );
    }

    #[test]
    fn insertion_at_end_and_identical() {
        assert_eq!(word_diff("a b c", "a  b c d e", 100), "a b c {+d e+}");
        assert_eq!(word_diff("a b", "a\tb", 100), "");
    }

    #[test]
    fn long_runs_and_length_are_capped() {
        let long: String = (0..50).map(|i| format!("w{i} ")).collect();
        let d = word_diff("x", &format!("x {long}"), 1000);
        assert!(d.contains("more words"), "{d}");
        let d = word_diff("x", &format!("y {long}"), 20);
        assert_eq!(d.chars().count(), 20);
        assert!(d.ends_with('…'));
    }
}
