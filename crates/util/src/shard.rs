//! Shards of an embarrassingly parallel job: which part of `n` items task `I` of `N` owns.
//!
//! The same [`Shard`] splits the corpus of `radit index build --shard`, the queries of
//! `radit score --shard` and the questions of `radit eval --shard`, so every sharded command
//! reads `--shard I/N` the same way, and `--shard slurm` takes `I` and `N` from a SLURM array
//! job's environment.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// Task `index` (from 0) of `count` tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// This task, `0..count`.
    pub index: usize,
    /// How many tasks share the job.
    pub count: usize,
}

/// A `--shard` value or SLURM environment that does not name a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShardError(String);

/// The SLURM array variables `--shard slurm` reads.
pub const SLURM_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
/// The lowest task id of the array (ids need not start at 0: `--array=1-4`).
pub const SLURM_TASK_MIN: &str = "SLURM_ARRAY_TASK_MIN";
/// The number of tasks of the array.
pub const SLURM_TASK_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";

impl Shard {
    /// The whole job as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError("the shard count must be at least 1".into()));
        }
        if index >= count {
            return Err(ShardError(format!(
                "shard {index} of {count} does not exist: shards are numbered 0 to {}",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// The shard of this SLURM array task: `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`, read through `var` (the process environment in
    /// [`Shard::from_slurm_env`]).
    pub fn from_slurm(var: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        let read = |name: &str| -> Result<usize, ShardError> {
            let value = var(name).ok_or_else(|| {
                ShardError(format!(
                    "--shard slurm: {name} is not set (is this an array job, `sbatch --array`?)"
                ))
            })?;
            value.trim().parse().map_err(|_| {
                ShardError(format!(
                    "--shard slurm: {name}={value:?} is not a task number"
                ))
            })
        };
        let id = read(SLURM_TASK_ID)?;
        let count = read(SLURM_TASK_COUNT)?;
        let min = match var(SLURM_TASK_MIN) {
            Some(_) => read(SLURM_TASK_MIN)?,
            None => 0,
        };
        let index = id.checked_sub(min).ok_or_else(|| {
            ShardError(format!(
                "--shard slurm: {SLURM_TASK_ID}={id} is below {SLURM_TASK_MIN}={min}"
            ))
        })?;
        Shard::new(index, count).map_err(|e| {
            ShardError(format!(
                "--shard slurm: {e} (only contiguous arrays, `--array=A-B`, map to shards)"
            ))
        })
    }

    /// [`Shard::from_slurm`] on the process environment.
    pub fn from_slurm_env() -> Result<Self, ShardError> {
        Shard::from_slurm(|name| std::env::var(name).ok())
    }

    /// Whether this is the whole job.
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// This shard's contiguous part of `0..n`: sizes differ by at most one, earlier shards
    /// take the extra items, and the parts of all shards tile `0..n` in order.
    pub fn range(self, n: usize) -> Range<usize> {
        let (base, extra) = (n / self.count, n % self.count);
        let start = self.index * base + self.index.min(extra);
        let len = base + usize::from(self.index < extra);
        start..start + len
    }

    /// Like [`Shard::range`], but cut at multiples of `block` (the last block may be short),
    /// so a shard's batches are exactly the single-process run's batches.
    pub fn block_range(self, n: usize, block: usize) -> Range<usize> {
        let block = block.max(1);
        let blocks = self.range(n.div_ceil(block));
        (blocks.start * block).min(n)..(blocks.end * block).min(n)
    }

    /// A file-name part: `shard-I-of-N`.
    pub fn file_tag(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// The shard a [`Shard::file_tag`] names; `None` for anything else.
    pub fn from_file_tag(tag: &str) -> Option<Shard> {
        let (index, count) = tag.strip_prefix("shard-")?.split_once("-of-")?;
        Shard::new(index.parse().ok()?, count.parse().ok()?).ok()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// `I/N` (task `I` of `N`, from 0), or `slurm` for the SLURM array task's shard.
    fn from_str(text: &str) -> Result<Self, ShardError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("slurm") {
            return Shard::from_slurm_env();
        }
        let bad = || {
            ShardError(format!(
                "`{text}` is not a shard: write I/N (task I of N, counted from 0, e.g. 0/4) or \
                 `slurm` (from {SLURM_TASK_ID} and {SLURM_TASK_COUNT})"
            ))
        };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index = index.trim().parse().map_err(|_| bad())?;
        let count = count.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ranges_tile_the_items_in_order_with_sizes_one_apart() {
        for n in [0, 1, 2, 7, 10, 101] {
            for count in 1..=6 {
                let ranges: Vec<_> = (0..count)
                    .map(|i| Shard::new(i, count).unwrap().range(n))
                    .collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[count - 1].end, n);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo <= 1, "n {n} count {count}: {lens:?}");
            }
        }
    }

    #[test]
    fn block_ranges_cut_at_block_boundaries_and_tile() {
        for (n, block, count) in [
            (100, 32, 2),
            (100, 32, 3),
            (5, 32, 2),
            (64, 32, 2),
            (0, 8, 3),
        ] {
            let ranges: Vec<_> = (0..count)
                .map(|i| Shard::new(i, count).unwrap().block_range(n, block))
                .collect();
            let mut at = 0;
            for r in &ranges {
                assert_eq!(r.start, at);
                assert!(r.start % block == 0 || r.start == n, "{r:?}");
                at = r.end;
            }
            assert_eq!(at, n);
        }
        // 100 rows in batches of 32: 4 batches, 2 per shard.
        assert_eq!(Shard::new(0, 2).unwrap().block_range(100, 32), 0..64);
        assert_eq!(Shard::new(1, 2).unwrap().block_range(100, 32), 64..100);
    }

    #[test]
    fn parses_i_of_n_and_refuses_what_is_not_a_shard() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert_eq!(" 0 / 1 ".parse::<Shard>().unwrap(), Shard::WHOLE);
        for (bad, says) in [
            ("4/4", "numbered 0 to 3"),
            ("0/0", "at least 1"),
            ("1", "I/N"),
            ("a/2", "I/N"),
            ("-1/2", "I/N"),
        ] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(Shard::new(2, 5).unwrap().to_string(), "2/5");
        assert_eq!(Shard::new(2, 5).unwrap().file_tag(), "shard-2-of-5");
        assert_eq!(Shard::from_file_tag("shard-2-of-5"), Shard::new(2, 5).ok());
        for bad in ["shard-5-of-5", "shard-x-of-5", "shard-2", "2-of-5"] {
            assert_eq!(Shard::from_file_tag(bad), None, "{bad}");
        }
    }

    #[test]
    fn slurm_array_variables_map_to_shards_from_the_lowest_task_id() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |name: &str| map.get(name).cloned()
        };
        let one_based = env(&[
            (SLURM_TASK_ID, "3"),
            (SLURM_TASK_MIN, "1"),
            (SLURM_TASK_COUNT, "4"),
        ]);
        assert_eq!(
            Shard::from_slurm(one_based).unwrap(),
            Shard::new(2, 4).unwrap()
        );
        let no_min = env(&[(SLURM_TASK_ID, "0"), (SLURM_TASK_COUNT, "2")]);
        assert_eq!(
            Shard::from_slurm(no_min).unwrap(),
            Shard::new(0, 2).unwrap()
        );
        let missing = Shard::from_slurm(env(&[])).unwrap_err().to_string();
        assert!(
            missing.contains(SLURM_TASK_ID) && missing.contains("array"),
            "{missing}"
        );
        let sparse = env(&[
            (SLURM_TASK_ID, "9"),
            (SLURM_TASK_MIN, "1"),
            (SLURM_TASK_COUNT, "3"),
        ]);
        let err = Shard::from_slurm(sparse).unwrap_err().to_string();
        assert!(err.contains("contiguous"), "{err}");
        let garbage = env(&[(SLURM_TASK_ID, "x"), (SLURM_TASK_COUNT, "2")]);
        let err = Shard::from_slurm(garbage).unwrap_err().to_string();
        assert!(err.contains("not a task number"), "{err}");
    }
}
