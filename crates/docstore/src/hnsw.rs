//! HNSW approximate inner-product search (Malkov & Yashunin), built deterministically in parallel.
//!
//! Construction inserts nodes in batches that grow with the graph (1 node at first, at most
//! [`MAX_BATCH`]). Within a batch, every node searches the graph as it stood before the batch
//! (in parallel, read-only) and also compares itself with every other node of the batch by brute
//! force, so no neighbour is missed; then forward links are chosen with the usual heuristic and
//! reverse links added and pruned per target node (again in parallel, each target independent).
//! The result depends only on the data and the seed, never on thread timing: a resumed build
//! writes the same bytes as an uninterrupted one.
//!
//! File layout (`hnsw.bin`, little-endian): a 64-byte header, node levels (u8, padded to 8),
//! level-0 links (`n × m0` u32, `u32::MAX` marks unused slots), then upper-level links (for each
//! node with level ≥ 1 in id order, `level × m` u32). The file is memory-mapped when opened.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::Path;

use memmap2::Mmap;
use radit_util::rng::{mix64, GAMMA};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{cast_slice, extend_u32, map_file, pad8};
use crate::kernels::{dot, dot4};
use crate::topk::Scored;

const MAGIC: &[u8; 8] = b"RDHNSW01";
const HEADER: usize = 64;
const NONE: u32 = u32::MAX;
/// Largest insertion batch.
pub const MAX_BATCH: usize = 512;

/// HNSW construction parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node on upper levels (level 0 keeps up to `2 m`).
    pub m: usize,
    /// Candidate list size during construction.
    pub ef_construction: usize,
    /// Seed of the level assignment.
    pub seed: u64,
    /// Recall@10 the default search `ef` is chosen to reach (estimated at build time).
    pub target_recall: f32,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            seed: 0x5eed,
            target_recall: 0.95,
        }
    }
}

impl HnswParams {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if self.m < 2 || self.m > 256 {
            return Err(Error::arg(format!(
                "hnsw m must be in 2..=256, got {}",
                self.m
            )));
        }
        if self.ef_construction < 1 {
            return Err(Error::arg("hnsw ef_construction must be positive"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Cand {
    d: f32,
    id: u32,
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// Generation-stamped visited set.
pub(crate) struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    pub(crate) fn new(n: usize) -> Self {
        Visited {
            marks: vec![0; n],
            epoch: 0,
        }
    }
    fn reset(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
    }
    /// Marks `i`; returns whether it was unmarked.
    #[inline]
    fn insert(&mut self, i: u32) -> bool {
        let m = &mut self.marks[i as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

trait Graph: Sync {
    fn neighbors(&self, v: u32, level: usize) -> &[u32];
}

struct Space<'a> {
    data: &'a [f32],
    dim: usize,
}

impl Space<'_> {
    /// Hints the CPU to fetch the start of row `i` (rows are read at random during graph
    /// search; the hardware prefetcher streams the rest). Prefetching whole rows measured slower.
    #[inline]
    fn prefetch(&self, i: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let row = self.row(i);
            let p = row.as_ptr().cast::<i8>();
            let mut off = 0;
            while off < (row.len() * 4).min(128) {
                // SAFETY: prefetching an address inside the row slice; SSE is baseline on x86-64
                // and a prefetch never faults.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
                off += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    #[inline]
    fn row(&self, i: u32) -> &[f32] {
        let i = i as usize;
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    #[inline]
    fn dist(&self, q: &[f32], i: u32) -> f32 {
        -dot(q, self.row(i))
    }
}

fn greedy<G: Graph>(
    g: &G,
    sp: &Space<'_>,
    q: &[f32],
    mut cur: Cand,
    level: usize,
    skip: Option<u32>,
) -> Cand {
    loop {
        let mut changed = false;
        for &nb in g.neighbors(cur.id, level) {
            if Some(nb) == skip {
                continue;
            }
            let d = sp.dist(q, nb);
            if d < cur.d {
                cur = Cand { d, id: nb };
                changed = true;
            }
        }
        if !changed {
            return cur;
        }
    }
}

/// Best-first search of one level; returns up to `ef` candidates sorted by distance.
/// Node `skip`, if any, is treated as absent.
#[allow(clippy::too_many_arguments)]
fn search_layer<G: Graph>(
    g: &G,
    sp: &Space<'_>,
    q: &[f32],
    eps: &[Cand],
    ef: usize,
    level: usize,
    vis: &mut Visited,
    skip: Option<u32>,
) -> Vec<Cand> {
    vis.reset();
    if let Some(s) = skip {
        vis.insert(s);
    }
    let mut cands: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef * 4);
    let mut res: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
    for &e in eps {
        if vis.insert(e.id) {
            cands.push(Reverse(e));
            res.push(e);
            if res.len() > ef {
                res.pop();
            }
        }
    }
    let mut fresh: Vec<u32> = Vec::with_capacity(64);
    while let Some(Reverse(c)) = cands.pop() {
        if let Some(w) = res.peek() {
            if res.len() >= ef && c.d > w.d {
                break;
            }
        }
        fresh.clear();
        fresh.extend(
            g.neighbors(c.id, level)
                .iter()
                .filter(|&&nb| vis.insert(nb)),
        );
        for &nb in fresh.iter().take(4) {
            sp.prefetch(nb);
        }
        let mut dists = [0f32; 4];
        for (i, &nb) in fresh.iter().enumerate() {
            if i % 4 == 0 {
                for &ahead in fresh.iter().skip(i + 4).take(4) {
                    sp.prefetch(ahead);
                }
                if i + 4 <= fresh.len() {
                    let r = |j: usize| sp.row(fresh[i + j]);
                    dists = dot4(q, [r(0), r(1), r(2), r(3)]).map(|x| -x);
                } else {
                    for (j, &v) in fresh[i..].iter().enumerate() {
                        dists[j] = sp.dist(q, v);
                    }
                }
            }
            let d = dists[i % 4];
            let far = res.peek().map_or(f32::INFINITY, |w| w.d);
            if res.len() < ef || d < far {
                let cand = Cand { d, id: nb };
                cands.push(Reverse(cand));
                res.push(cand);
                if res.len() > ef {
                    res.pop();
                }
            }
        }
    }
    res.into_sorted_vec()
}

/// The neighbour-selection heuristic: keep a candidate only if it is closer to the base node
/// than to every neighbour already kept. `cands` must be sorted by distance to the base.
fn select(sp: &Space<'_>, cands: &[Cand], max: usize) -> Vec<u32> {
    let mut kept: Vec<Cand> = Vec::with_capacity(max);
    for &c in cands {
        if kept.len() >= max {
            break;
        }
        let cv = sp.row(c.id);
        if kept.iter().all(|s| sp.dist(cv, s.id) >= c.d) {
            kept.push(c);
        }
    }
    kept.into_iter().map(|c| c.id).collect()
}

fn level_of(seed: u64, node: usize, ml: f64) -> u8 {
    // A hash of (seed, node), not a stream, so a node's level does not depend on build order.
    let z = mix64(seed ^ (node as u64).wrapping_mul(GAMMA));
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
    (-u.ln() * ml).floor().min(30.0) as u8
}

struct Builder<'a> {
    sp: Space<'a>,
    m: usize,
    m0: usize,
    efc: usize,
    levels: Vec<u8>,
    /// Level-0 links, `m0 + 1` slots per node: the count, then the neighbours (one cache-friendly
    /// region per node; level 0 is where the search spends its time).
    links0: Vec<u32>,
    /// Links on levels 1.. (`upper[v][l - 1]`), for the few nodes that have them.
    upper: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    max_level: usize,
}

impl Graph for Builder<'_> {
    #[inline]
    fn neighbors(&self, v: u32, level: usize) -> &[u32] {
        let v = v as usize;
        if level == 0 {
            let base = v * (self.m0 + 1);
            let len = self.links0[base] as usize;
            &self.links0[base + 1..base + 1 + len]
        } else {
            self.upper[v]
                .get(level - 1)
                .map_or(&[][..], |l| l.as_slice())
        }
    }
}

impl Builder<'_> {
    fn set_links(&mut self, v: usize, level: usize, list: &[u32]) {
        if level == 0 {
            let base = v * (self.m0 + 1);
            let len = list.len().min(self.m0);
            self.links0[base] = len as u32;
            self.links0[base + 1..base + 1 + len].copy_from_slice(&list[..len]);
        } else if let Some(slot) = self.upper[v].get_mut(level - 1) {
            slot.clear();
            slot.extend_from_slice(list);
        }
    }

    fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// Forward links of node `q` of batch `[s, e)` per level.
    fn forward(&self, q: usize, s: usize, e: usize, vis: &mut Visited) -> Vec<Vec<u32>> {
        let lq = self.levels[q] as usize;
        let qv = self.sp.row(q as u32);
        let mut per: Vec<Vec<Cand>> = vec![Vec::new(); lq + 1];
        if let Some(ep) = self.entry {
            let mut cur = Cand {
                d: self.sp.dist(qv, ep),
                id: ep,
            };
            for l in (lq + 1..=self.max_level).rev() {
                cur = greedy(self, &self.sp, qv, cur, l, None);
            }
            let mut eps = vec![cur];
            for l in (0..=lq.min(self.max_level)).rev() {
                let w = search_layer(self, &self.sp, qv, &eps, self.efc, l, vis, None);
                per[l].extend_from_slice(&w);
                eps = w;
            }
        }
        // Batch members the frozen graph cannot return; only those closer than the farthest
        // graph candidate of a full list can matter.
        let bar: Vec<f32> = per
            .iter()
            .map(|c| {
                if c.len() >= self.efc {
                    c.last().map_or(f32::INFINITY, |w| w.d)
                } else {
                    f32::INFINITY
                }
            })
            .collect();
        for p in s..e {
            if p == q {
                continue;
            }
            let d = self.sp.dist(qv, p as u32);
            let top = lq.min(self.levels[p] as usize);
            for (lvl, &b) in per.iter_mut().zip(&bar).take(top + 1) {
                if d < b {
                    lvl.push(Cand { d, id: p as u32 });
                }
            }
        }
        per.into_iter()
            .enumerate()
            .map(|(l, mut c)| {
                c.sort_unstable();
                select(&self.sp, &c, self.cap(l))
            })
            .collect()
    }

    fn insert_batch(&mut self, s: usize, e: usize) {
        let n = self.levels.len();
        let fwd: Vec<Vec<Vec<u32>>> = (s..e)
            .into_par_iter()
            .map_init(|| Visited::new(n), |vis, q| self.forward(q, s, e, vis))
            .collect();
        let mut edges: Vec<(u32, u8, u32)> = Vec::new();
        for (i, lists) in fwd.iter().enumerate() {
            let q = (s + i) as u32;
            for (l, list) in lists.iter().enumerate() {
                edges.extend(list.iter().map(|&t| (t, l as u8, q)));
            }
        }
        for (i, lists) in fwd.iter().enumerate() {
            for (l, list) in lists.iter().enumerate() {
                self.set_links(s + i, l, list);
            }
        }
        edges.sort_unstable();
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut a = 0;
        while a < edges.len() {
            let mut b = a + 1;
            while b < edges.len() && edges[b].0 == edges[a].0 && edges[b].1 == edges[a].1 {
                b += 1;
            }
            groups.push((a, b));
            a = b;
        }
        let updates: Vec<(u32, usize, Vec<u32>)> = groups
            .par_iter()
            .map(|&(a, b)| {
                let (t, l) = (edges[a].0, edges[a].1 as usize);
                let mut list = self.neighbors(t, l).to_vec();
                for &(_, _, src) in &edges[a..b] {
                    if !list.contains(&src) {
                        list.push(src);
                    }
                }
                let cap = self.cap(l);
                if list.len() > cap {
                    let tv = self.sp.row(t);
                    let mut c: Vec<Cand> = list
                        .iter()
                        .map(|&v| Cand {
                            d: self.sp.dist(tv, v),
                            id: v,
                        })
                        .collect();
                    c.sort_unstable();
                    list = select(&self.sp, &c, cap);
                }
                (t, l, list)
            })
            .collect();
        for (t, l, list) in updates {
            self.set_links(t as usize, l, &list);
        }
        for q in s..e {
            let lq = self.levels[q] as usize;
            if self.entry.is_none() || lq > self.max_level {
                self.entry = Some(q as u32);
                self.max_level = lq;
            }
        }
    }
}

/// Builds the graph over the rows of `data` and returns the serialized `hnsw.bin` bytes.
/// `progress` is called with the number of nodes inserted so far.
pub(crate) fn build(
    data: &[f32],
    dim: usize,
    params: &HnswParams,
    progress: &dyn Fn(usize),
) -> Result<Vec<u8>> {
    params.validate()?;
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::arg(
            "hnsw: data length is not a multiple of the dimension",
        ));
    }
    let n = data.len() / dim;
    if n >= NONE as usize {
        return Err(Error::arg("hnsw: too many rows"));
    }
    let ml = 1.0 / (params.m as f64).ln();
    let levels: Vec<u8> = (0..n).map(|i| level_of(params.seed, i, ml)).collect();
    let upper = levels
        .iter()
        .map(|&l| vec![Vec::new(); l as usize])
        .collect();
    let m0 = params.m * 2;
    let mut b = Builder {
        sp: Space { data, dim },
        m: params.m,
        m0,
        efc: params.ef_construction.max(params.m),
        links0: vec![0; n * (m0 + 1)],
        levels,
        upper,
        entry: None,
        max_level: 0,
    };
    let mut s = 0;
    let mut last = 0;
    while s < n {
        let e = (s + (s / 16).clamp(1, MAX_BATCH)).min(n);
        b.insert_batch(s, e);
        s = e;
        if s - last > n / 100 || s == n {
            progress(s);
            last = s;
        }
    }
    Ok(serialize(&b, params))
}

fn serialize(b: &Builder<'_>, params: &HnswParams) -> Vec<u8> {
    let n = b.levels.len();
    let upper_len: usize = b.levels.iter().map(|&l| l as usize * b.m).sum();
    let mut out = Vec::with_capacity(HEADER + n + 8 + 4 * (n * b.m0 + upper_len));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(&(b.sp.dim as u64).to_le_bytes());
    out.extend_from_slice(&(b.m as u32).to_le_bytes());
    out.extend_from_slice(&(b.m0 as u32).to_le_bytes());
    out.extend_from_slice(&(b.efc as u32).to_le_bytes());
    out.extend_from_slice(&(b.max_level as u32).to_le_bytes());
    out.extend_from_slice(&b.entry.unwrap_or(NONE).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&params.seed.to_le_bytes());
    out.extend_from_slice(&(upper_len as u64).to_le_bytes());
    debug_assert_eq!(out.len(), HEADER);
    out.extend_from_slice(&b.levels);
    pad8(&mut out);
    let mut slots = vec![NONE; b.m0];
    for v in 0..n {
        slots.iter_mut().for_each(|s| *s = NONE);
        for (s, &x) in slots.iter_mut().zip(b.neighbors(v as u32, 0)) {
            *s = x;
        }
        extend_u32(&mut out, &slots);
    }
    let mut up = vec![NONE; b.m];
    for v in 0..n {
        for l in 1..=b.levels[v] as usize {
            up.iter_mut().for_each(|s| *s = NONE);
            for (s, &x) in up.iter_mut().zip(b.neighbors(v as u32, l)) {
                *s = x;
            }
            extend_u32(&mut out, &up);
        }
    }
    out
}

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u64>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => {
                // SAFETY: any u64 buffer is a valid byte buffer of 8× the length.
                unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 8) }
            }
        }
    }
}

/// An HNSW graph over an embedding matrix, memory-mapped from `hnsw.bin` or held in memory.
pub struct Hnsw {
    map: Storage,
    len: usize,
    n: usize,
    dim: usize,
    m: usize,
    m0: usize,
    max_level: usize,
    entry: u32,
    levels_at: usize,
    links0_at: usize,
    upper_at: usize,
    upper_len: usize,
    upper_off: Vec<usize>,
}

struct View<'a> {
    h: &'a Hnsw,
    levels: &'a [u8],
    links0: &'a [u32],
    upper: &'a [u32],
}

fn trim(s: &[u32]) -> &[u32] {
    let end = s.iter().position(|&x| x == NONE).unwrap_or(s.len());
    &s[..end]
}

impl Graph for View<'_> {
    fn neighbors(&self, v: u32, level: usize) -> &[u32] {
        let v = v as usize;
        if level == 0 {
            trim(&self.links0[v * self.h.m0..(v + 1) * self.h.m0])
        } else if level <= self.levels[v] as usize {
            let a = self.h.upper_off[v] + (level - 1) * self.h.m;
            trim(&self.upper[a..a + self.h.m])
        } else {
            &[]
        }
    }
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Hnsw {
    /// Opens and validates `hnsw.bin` for `n` rows of dimension `dim`.
    pub(crate) fn open(path: &Path, n: usize, dim: usize) -> Result<Hnsw> {
        let map = map_file(path)?.ok_or_else(|| Error::invalid(path, "empty file"))?;
        let len = map.len();
        Self::from_storage(Storage::Mapped(map), len, n, dim, path)
    }

    /// Builds a graph in memory over the rows of `data` (for benchmarks and tools; an index
    /// build writes it to `hnsw.bin` instead).
    pub fn build(data: &[f32], dim: usize, params: &HnswParams) -> Result<Hnsw> {
        let bytes = build(data, dim, params, &|_| {})?;
        let len = bytes.len();
        let mut words = vec![0u64; len.div_ceil(8)];
        for (w, c) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut a = [0u8; 8];
            a[..c.len()].copy_from_slice(c);
            *w = u64::from_ne_bytes(a);
        }
        Self::from_storage(
            Storage::Owned(words),
            len,
            data.len() / dim,
            dim,
            Path::new("<memory>"),
        )
    }

    fn from_storage(
        storage: Storage,
        len: usize,
        n: usize,
        dim: usize,
        path: &Path,
    ) -> Result<Hnsw> {
        let bad = |msg: String| Error::invalid(path, msg);
        let map = &storage.bytes()[..len];
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(bad("not an HNSW graph file (bad magic)".into()));
        }
        let fn_ = rd_u64(map, 8) as usize;
        let fdim = rd_u64(map, 16) as usize;
        let m = rd_u32(map, 24) as usize;
        let m0 = rd_u32(map, 28) as usize;
        let max_level = rd_u32(map, 36) as usize;
        let entry = rd_u32(map, 40);
        let upper_len = rd_u64(map, 56) as usize;
        if fn_ != n || fdim != dim {
            return Err(bad(format!(
                "graph is for {fn_} rows of dim {fdim}, index has {n} rows of dim {dim}"
            )));
        }
        let levels_at = HEADER;
        let links0_at = levels_at + n.div_ceil(8) * 8;
        let upper_at = links0_at + n * m0 * 4;
        if map.len() != upper_at + upper_len * 4 || m == 0 || m0 == 0 {
            return Err(bad("graph file size does not match its header".into()));
        }
        let levels = &map[levels_at..levels_at + n];
        let mut upper_off = Vec::with_capacity(n);
        let mut acc = 0usize;
        for &l in levels {
            upper_off.push(acc);
            acc += l as usize * m;
        }
        if acc != upper_len {
            return Err(bad("graph levels do not match the upper-level table".into()));
        }
        let h = Hnsw {
            map: storage,
            len,
            n,
            dim,
            m,
            m0,
            max_level,
            entry,
            levels_at,
            links0_at,
            upper_at,
            upper_len,
            upper_off,
        };
        {
            let v = h
                .view()
                .ok_or_else(|| bad("misaligned graph file".into()))?;
            let ok_links = v
                .links0
                .iter()
                .chain(v.upper.iter())
                .all(|&x| x == NONE || (x as usize) < n);
            let ok_entry =
                n == 0 || ((entry as usize) < n && v.levels[entry as usize] as usize == max_level);
            if !ok_links || !ok_entry {
                return Err(bad("graph links out of range".into()));
            }
        }
        Ok(h)
    }

    fn view(&self) -> Option<View<'_>> {
        let map = &self.map.bytes()[..self.len];
        Some(View {
            h: self,
            levels: &map[self.levels_at..self.levels_at + self.n],
            links0: cast_slice(&map[self.links0_at..self.upper_at])?,
            upper: cast_slice(&map[self.upper_at..self.upper_at + self.upper_len * 4])?,
        })
    }

    /// Links per node on upper levels.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Number of levels above the base level.
    pub fn max_level(&self) -> usize {
        self.max_level
    }

    /// Approximate top-`k` for each query (rows of `queries`) with search list size `ef`;
    /// `data` must be the matrix the graph was built over.
    pub fn search(
        &self,
        data: &[f32],
        queries: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<Vec<Scored>>> {
        self.search_excluding(data, queries, None, k, ef)
    }

    /// Like [`Hnsw::search`], but query `i` never visits nor returns node `exclude[i]`: the
    /// leave-one-out search used to estimate recall with indexed rows as queries.
    pub(crate) fn search_excluding(
        &self,
        data: &[f32],
        queries: &[f32],
        exclude: Option<&[u32]>,
        k: usize,
        ef: usize,
    ) -> Result<Vec<Vec<Scored>>> {
        let dim = self.dim;
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::arg(format!(
                "query buffer length {} is not a multiple of the index dimension {dim}",
                queries.len()
            )));
        }
        if data.len() != self.n * dim {
            return Err(Error::arg(
                "hnsw: embedding matrix does not match the graph",
            ));
        }
        let view = self
            .view()
            .ok_or_else(|| Error::arg("hnsw: misaligned graph"))?;
        let sp = Space { data, dim };
        let n = self.n;
        if exclude.is_some_and(|e| e.len() * dim != queries.len()) {
            return Err(Error::arg("hnsw: one excluded id per query expected"));
        }
        // The search list never holds more than the n nodes, and `ef` comes from the
        // manifest: a corrupt one (4294967296, found by radit-fuzz) must not size buffers.
        let ef = ef.max(k).min(n);
        Ok(queries
            .par_chunks(dim)
            .enumerate()
            .map_init(
                || Visited::new(n),
                |vis, (qi, q)| {
                    if n == 0 || k == 0 {
                        return Vec::new();
                    }
                    let skip = exclude.map(|e| e[qi]);
                    let mut entry = self.entry;
                    if skip == Some(entry) {
                        // Start from a neighbour of the excluded entry point.
                        match (0..=self.max_level)
                            .rev()
                            .find_map(|l| view.neighbors(entry, l).first().copied())
                        {
                            Some(nb) => entry = nb,
                            None => return Vec::new(),
                        }
                    }
                    let mut cur = Cand {
                        d: sp.dist(q, entry),
                        id: entry,
                    };
                    for l in (1..=self.max_level).rev() {
                        cur = greedy(&view, &sp, q, cur, l, skip);
                    }
                    let w = search_layer(&view, &sp, q, &[cur], ef, 0, vis, skip);
                    w.into_iter()
                        .take(k)
                        .map(|c| Scored {
                            id: c.id,
                            score: -c.d,
                        })
                        .collect()
                },
            )
            .collect())
    }
}

/// The rows `ids` of a row-major `[n, dim]` matrix, concatenated (recall-estimate queries).
pub(crate) fn gather_rows(data: &[f32], dim: usize, ids: &[u32]) -> Vec<f32> {
    ids.iter()
        .flat_map(|&i| {
            data[i as usize * dim..(i as usize + 1) * dim]
                .iter()
                .copied()
        })
        .collect()
}

/// Recall@k of the graph at search size `ef`, using `sample` rows as leave-one-out queries:
/// each row's own node is excluded from the graph search and from the exact list (searching
/// with the row itself present would overstate recall, its links lead straight to its
/// neighbours).
pub(crate) fn estimate_recall(
    h: &Hnsw,
    data: &[f32],
    dim: usize,
    sample: &[u32],
    exact: &[Vec<Scored>],
    k: usize,
    ef: usize,
) -> Result<f64> {
    let q = gather_rows(data, dim, sample);
    let approx = h.search_excluding(data, &q, Some(sample), k, ef)?;
    let mut hit = 0usize;
    let mut total = 0usize;
    for ((&self_id, ex), ap) in sample.iter().zip(exact).zip(&approx) {
        let truth: Vec<u32> = ex
            .iter()
            .map(|s| s.id)
            .filter(|&i| i != self_id)
            .take(k)
            .collect();
        let got: Vec<u32> = ap
            .iter()
            .map(|s| s.id)
            .filter(|&i| i != self_id)
            .take(k)
            .collect();
        total += truth.len();
        hit += truth.iter().filter(|t| got.contains(t)).count();
    }
    Ok(if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_geometric() {
        let ml = 1.0 / 16f64.ln();
        let n = 100_000;
        let above: usize = (0..n).filter(|&i| level_of(1, i, ml) > 0).count();
        // P(level > 0) = 1/16.
        assert!((above as f64 / n as f64 - 1.0 / 16.0).abs() < 0.01);
    }

    #[test]
    fn a_huge_search_list_size_is_capped_at_the_node_count() {
        // Found by radit-fuzz: `ef_search` 2^32 from a corrupt manifest sized a 128 GiB buffer.
        let dim = 4;
        let data: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let h = Hnsw::build(&data, dim, &HnswParams::default()).unwrap();
        let q = &data[..dim];
        let small = h.search(&data, q, 3, 10).unwrap();
        for ef in [1 << 32, usize::MAX] {
            assert_eq!(h.search(&data, q, 3, ef).unwrap(), small);
        }
        assert_eq!(h.search(&data, q, usize::MAX, 10).unwrap()[0].len(), 10);
    }
}
