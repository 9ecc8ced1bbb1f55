//! Suggestions ("did you mean"): the closest known word to a typo.

// ---------------------------------------------------------------------------
// Suggestions
// ---------------------------------------------------------------------------

/// The candidate closest to `word` by Damerau–Levenshtein distance (optimal
/// string alignment), if it is a likely typo: distance 1 for words of up to
/// four characters, 2 for longer ones. Failing that, a candidate that starts
/// with `word` when `word` has at least three characters (`req` → `request`).
pub(super) fn suggest(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let word = word.to_lowercase();
    let chars: Vec<char> = word.chars().collect();
    // Candidates are at most nine characters: anything much longer is too far.
    if chars.len() < 2 || chars.len() > 16 {
        return None;
    }
    let max_distance = if chars.len() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &'static str)> = None;
    for &candidate in candidates {
        let candidate_chars: Vec<char> = candidate.chars().collect();
        let distance = edit_distance(&chars, &candidate_chars);
        if distance <= max_distance && best.is_none_or(|(closest, _)| distance < closest) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate).or_else(|| {
        (chars.len() >= 3)
            .then(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|candidate| candidate.starts_with(&word))
            })
            .flatten()
    })
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of adjacent characters each cost one.
pub(super) fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut before_previous: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &a_char) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && a_char == b[j - 1] && a[i - 1] == b_char {
                best = best.min(before_previous[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        before_previous = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}
