//! `--find-max`'s search for the most calls a gateway holds: double the calls until a run does
//! not hold (or halve them until one does), then bisect between the highest load held and the
//! lowest that failed, to one call. Pure: the caller runs each load and says whether it held.

/// The search's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSearch {
    held: Option<usize>,
    failed: Option<usize>,
    max_calls: usize,
}

impl CallSearch {
    /// A search that never tries more than `max_calls` calls.
    pub fn new(max_calls: usize) -> Self {
        CallSearch {
            held: None,
            failed: None,
            max_calls: max_calls.max(1),
        }
    }

    /// Records that `calls` held (or not) and says what to try next; `None`: done.
    pub fn next(&mut self, calls: usize, held: bool) -> Option<usize> {
        if held {
            self.held = self.held.max(Some(calls));
        } else {
            self.failed = Some(self.failed.map_or(calls, |f| f.min(calls)));
        }
        match (self.held, self.failed) {
            (Some(h), None) => Some(h.saturating_mul(2).min(self.max_calls)).filter(|&n| n > h),
            (None, Some(f)) => (f > 1).then_some(f / 2),
            (Some(h), Some(f)) => (f > h + 1).then_some(h + (f - h) / 2),
            (None, None) => None,
        }
    }

    /// The most calls held so far.
    pub fn held(&self) -> Option<usize> {
        self.held
    }

    /// The fewest calls that did not hold so far.
    pub fn failed(&self) -> Option<usize> {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loads a search tries against a gateway that holds `capacity` calls, from `start`.
    fn tries(start: usize, capacity: usize, max: usize) -> (Vec<usize>, Option<usize>) {
        let mut search = CallSearch::new(max);
        let (mut tried, mut next) = (Vec::new(), Some(start));
        while let Some(calls) = next {
            assert!(tried.len() < 64, "{tried:?}");
            tried.push(calls);
            next = search.next(calls, calls <= capacity);
        }
        (tried, search.held())
    }

    #[test]
    fn doubles_then_bisects_to_one_call() {
        assert_eq!(tries(2, 9, 512), (vec![2, 4, 8, 16, 12, 10, 9], Some(9)));
        assert_eq!(tries(2, 8, 512), (vec![2, 4, 8, 16, 12, 10, 9], Some(8)));
        assert_eq!(tries(2, 2, 512), (vec![2, 4, 3], Some(2)));
    }

    #[test]
    fn halves_when_the_first_load_fails() {
        assert_eq!(tries(8, 3, 512), (vec![8, 4, 2, 3], Some(3)));
        assert_eq!(tries(2, 0, 512), (vec![2, 1], None));
    }

    #[test]
    fn stops_at_the_ceiling() {
        assert_eq!(tries(2, 100, 10), (vec![2, 4, 8, 10], Some(10)));
    }
}
