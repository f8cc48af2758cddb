//! Word error rate: how far a transcript is from the reference, after normalizing what no
//! listener would count as an error (case, punctuation, "5" against "five").

/// Lower-case words, punctuation dropped (apostrophes inside words too: "o'clock" is
/// "oclock"), hyphens split, and numbers written out in words ("42" is "forty two").
pub fn normalize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == '-' || c == '/') {
        let word: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        if word.is_empty() {
            continue;
        }
        // "007" is a code, not a number.
        let number = word
            .parse::<u64>()
            .ok()
            .filter(|&n| n < 1_000_000 && (word == "0" || !word.starts_with('0')));
        match number {
            Some(n) => words.extend(number_words(n).into_iter().map(str::to_owned)),
            None => words.push(spelled_out(word)),
        }
    }
    words
}

/// Titles as they are read ("Mr." is "mister"), as Whisper's English normalizer has them.
fn spelled_out(word: String) -> String {
    match word.as_str() {
        "mr" => "mister".into(),
        "mrs" => "missus".into(),
        "dr" => "doctor".into(),
        "st" => "saint".into(),
        _ => word,
    }
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// `n` (below a million) in words, as it is read: 342 is "three hundred forty two".
fn number_words(n: u64) -> Vec<&'static str> {
    fn below_thousand(n: u64, out: &mut Vec<&'static str>) {
        let (hundreds, rest) = (n / 100, n % 100);
        if hundreds > 0 {
            out.push(ONES[hundreds as usize]);
            out.push("hundred");
        }
        if rest >= 20 {
            out.push(TENS[(rest / 10) as usize]);
            if rest % 10 > 0 {
                out.push(ONES[(rest % 10) as usize]);
            }
        } else if rest > 0 || hundreds == 0 {
            out.push(ONES[rest as usize]);
        }
    }
    let mut out = Vec::new();
    let (thousands, rest) = (n / 1000, n % 1000);
    if thousands > 0 {
        below_thousand(thousands, &mut out);
        out.push("thousand");
        if rest > 0 {
            below_thousand(rest, &mut out);
        }
    } else {
        below_thousand(rest, &mut out);
    }
    out
}

/// Word-level edit distance between two word sequences: substitutions + deletions +
/// insertions.
pub fn edit_distance(reference: &[String], hypothesis: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut current = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        current[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitute = previous[j] + usize::from(r != h);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[hypothesis.len()]
}

/// Errors and reference words, summed over many clips: the corpus WER is their ratio.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// Substitutions, deletions and insertions.
    pub errors: usize,
    /// Words in the references.
    pub words: usize,
}

impl Score {
    /// Scores `hypothesis` against `reference` (both normalized first).
    pub fn of(reference: &str, hypothesis: &str) -> Self {
        let reference = normalize(reference);
        Score {
            errors: edit_distance(&reference, &normalize(hypothesis)),
            words: reference.len(),
        }
    }

    /// The word error rate: errors per reference word (`0` for no words).
    pub fn wer(&self) -> f64 {
        if self.words == 0 {
            0.0
        } else {
            self.errors as f64 / self.words as f64
        }
    }
}

impl std::ops::AddAssign for Score {
    fn add_assign(&mut self, other: Score) {
        self.errors += other.errors;
        self.words += other.words;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_drops_what_a_listener_would_not_count() {
        assert_eq!(
            normalize("Please call me back at 5 o'clock, Bob-Smith!"),
            [
                "please", "call", "me", "back", "at", "five", "oclock", "bob", "smith"
            ]
        );
        assert_eq!(
            normalize("My number is 42."),
            ["my", "number", "is", "forty", "two"]
        );
        assert_eq!(normalize("0 and 007"), ["zero", "and", "007"]);
        assert_eq!(
            normalize("1,205"),
            ["one", "thousand", "two", "hundred", "five"]
        );
        assert_eq!(normalize("318"), ["three", "hundred", "eighteen"]);
        assert_eq!(normalize("Mr. Dashwood"), ["mister", "dashwood"]);
    }

    #[test]
    fn errors_are_counted_per_reference_word() {
        let s = Score::of("the birch canoe slid", "The birch canoe slid.");
        assert_eq!(
            s,
            Score {
                errors: 0,
                words: 4
            }
        );
        // One substitution, one deletion, one insertion.
        let s = Score::of("a b c d", "a x c d e");
        assert_eq!(s.errors, 2);
        let s = Score::of("a b c d", "a c d e");
        assert_eq!(s.errors, 2);
        let s = Score::of("a b c d", "");
        assert_eq!((s.errors, s.wer()), (4, 1.0));
        let mut total = Score::of("five words are here now", "five words here now");
        total += Score::of("five more words right here", "five more words right here");
        assert_eq!((total.errors, total.words), (1, 10));
        assert!((total.wer() - 0.1).abs() < 1e-12);
    }
}
