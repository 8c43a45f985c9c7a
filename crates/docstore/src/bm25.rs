//! BM25 lexical search over an inverted index stored in one memory-mapped file.
//!
//! We write our own (a few hundred lines) rather than use tantivy: tantivy costs minutes of
//! clean build on two cores, and its segment files carry random ids, so a resumed build could
//! not reproduce an uninterrupted one byte for byte.
//!
//! `bm25.bin` layout (little-endian, sections 8-byte aligned): a 64-byte header; document
//! lengths (u32 × docs); term offsets into the term blob (u64 × terms+1); posting offsets
//! (u64 × terms+1); posting document ids (u32 × postings); term frequencies (u32 × postings);
//! the term blob (terms sorted bytewise, concatenated). Terms are found by binary search.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{cast_slice, extend_u32, extend_u64, map_file, pad8};
use crate::text::analyze;
use crate::topk::{Scored, TopK};

const MAGIC: &[u8; 8] = b"RDBM2501";
const HEADER: usize = 64;

/// BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    /// Term-frequency saturation.
    pub k1: f32,
    /// Length normalization.
    pub b: f32,
}

impl Default for Bm25Params {
    /// Lucene's defaults, k1 = 1.2 and b = 0.75.
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.75 }
    }
}

/// Accumulates documents, then serializes the index.
pub(crate) struct Bm25Builder {
    vocab: HashMap<String, u32>,
    postings: Vec<Vec<(u32, u32)>>,
    doc_lens: Vec<u32>,
    n_postings: u64,
}

impl Bm25Builder {
    pub(crate) fn new() -> Self {
        Bm25Builder {
            vocab: HashMap::new(),
            postings: Vec::new(),
            doc_lens: Vec::new(),
            n_postings: 0,
        }
    }

    /// Adds the next document (ids are assigned in order).
    pub(crate) fn add(&mut self, text: &str) {
        let doc = self.doc_lens.len() as u32;
        let mut tokens = analyze(text);
        self.doc_lens.push(tokens.len() as u32);
        tokens.sort_unstable();
        let mut i = 0;
        while i < tokens.len() {
            let mut j = i + 1;
            while j < tokens.len() && tokens[j] == tokens[i] {
                j += 1;
            }
            let tf = (j - i) as u32;
            let next = self.postings.len() as u32;
            let id = *self
                .vocab
                .entry(std::mem::take(&mut tokens[i]))
                .or_insert(next);
            if id == next {
                self.postings.push(Vec::new());
            }
            self.postings[id as usize].push((doc, tf));
            self.n_postings += 1;
            i = j;
        }
    }

    /// Serializes; returns the bytes and the statistics for the manifest.
    pub(crate) fn finish(self, params: Bm25Params) -> (Vec<u8>, Bm25Stats) {
        let n_docs = self.doc_lens.len();
        let total_len: u64 = self.doc_lens.iter().map(|&l| l as u64).sum();
        let avgdl = if n_docs == 0 {
            0.0
        } else {
            total_len as f64 / n_docs as f64
        };
        let mut terms: Vec<(String, u32)> = self.vocab.into_iter().collect();
        terms.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let term_bytes: usize = terms.iter().map(|t| t.0.len()).sum();
        let np = self.n_postings as usize;
        let mut out =
            Vec::with_capacity(HEADER + n_docs * 4 + terms.len() * 16 + np * 8 + term_bytes + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(n_docs as u64).to_le_bytes());
        out.extend_from_slice(&(terms.len() as u64).to_le_bytes());
        out.extend_from_slice(&(np as u64).to_le_bytes());
        out.extend_from_slice(&params.k1.to_le_bytes());
        out.extend_from_slice(&params.b.to_le_bytes());
        out.extend_from_slice(&avgdl.to_le_bytes());
        out.extend_from_slice(&(term_bytes as u64).to_le_bytes());
        out.resize(HEADER, 0);
        extend_u32(&mut out, &self.doc_lens);
        pad8(&mut out);
        let mut toff = Vec::with_capacity(terms.len() + 1);
        let mut poff = Vec::with_capacity(terms.len() + 1);
        let (mut ta, mut pa) = (0u64, 0u64);
        for (t, id) in &terms {
            toff.push(ta);
            poff.push(pa);
            ta += t.len() as u64;
            pa += self.postings[*id as usize].len() as u64;
        }
        toff.push(ta);
        poff.push(pa);
        extend_u64(&mut out, &toff);
        extend_u64(&mut out, &poff);
        for (_, id) in &terms {
            for &(d, _) in &self.postings[*id as usize] {
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        pad8(&mut out);
        for (_, id) in &terms {
            for &(_, tf) in &self.postings[*id as usize] {
                out.extend_from_slice(&tf.to_le_bytes());
            }
        }
        pad8(&mut out);
        for (t, _) in &terms {
            out.extend_from_slice(t.as_bytes());
        }
        let stats = Bm25Stats {
            terms: terms.len() as u64,
            postings: np as u64,
            avg_doc_len: avgdl,
        };
        (out, stats)
    }
}

/// Sizes of a BM25 index.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bm25Stats {
    /// Distinct terms.
    pub terms: u64,
    /// (term, document) pairs.
    pub postings: u64,
    /// Mean analyzed length of a document.
    pub avg_doc_len: f64,
}

/// A memory-mapped BM25 index.
pub struct Bm25 {
    map: Mmap,
    n_docs: usize,
    n_terms: usize,
    n_post: usize,
    k1: f32,
    b: f32,
    avgdl: f64,
    at: [usize; 6],
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn rd_f32(b: &[u8], at: usize) -> f32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    f32::from_le_bytes(a)
}

struct Parts<'a> {
    doc_lens: &'a [u32],
    toff: &'a [u64],
    poff: &'a [u64],
    docs: &'a [u32],
    tfs: &'a [u32],
    blob: &'a [u8],
}

impl Bm25 {
    /// Opens and validates `bm25.bin` for an index of `n_docs` chunks.
    pub(crate) fn open(path: &Path, n_docs: usize) -> Result<Bm25> {
        let bad = |m: &str| Error::invalid(path, m.to_string());
        let map = map_file(path)?.ok_or_else(|| bad("empty file"))?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(bad("not a BM25 index file (bad magic)"));
        }
        let nd = rd_u64(&map, 8) as usize;
        let nt = rd_u64(&map, 16) as usize;
        let np = rd_u64(&map, 24) as usize;
        let k1 = rd_f32(&map, 32);
        let b = rd_f32(&map, 36);
        let avgdl = f64::from_bits(rd_u64(&map, 40));
        let tb = rd_u64(&map, 48) as usize;
        if nd != n_docs {
            return Err(bad("BM25 index does not match the chunk count"));
        }
        let a8 = |x: usize| x.div_ceil(8) * 8;
        let lens_at = HEADER;
        let toff_at = a8(lens_at + nd * 4);
        let poff_at = toff_at + (nt + 1) * 8;
        let docs_at = poff_at + (nt + 1) * 8;
        let tfs_at = a8(docs_at + np * 4);
        let blob_at = a8(tfs_at + np * 4);
        if map.len() != blob_at + tb {
            return Err(bad("BM25 file size does not match its header"));
        }
        let idx = Bm25 {
            map,
            n_docs: nd,
            n_terms: nt,
            n_post: np,
            k1,
            b,
            avgdl,
            at: [lens_at, toff_at, poff_at, docs_at, tfs_at, blob_at],
        };
        {
            let p = idx.parts().ok_or_else(|| bad("misaligned BM25 file"))?;
            let mono = |v: &[u64], end: usize| {
                v.first() == Some(&0)
                    && v.last() == Some(&(end as u64))
                    && v.windows(2).all(|w| w[0] <= w[1])
            };
            if !mono(p.toff, tb) || !mono(p.poff, np) || p.docs.iter().any(|&d| d as usize >= nd) {
                return Err(bad("BM25 offsets or postings out of range"));
            }
        }
        Ok(idx)
    }

    fn parts(&self) -> Option<Parts<'_>> {
        let [l, t, p, d, f, bl] = self.at;
        let m = &self.map[..];
        Some(Parts {
            doc_lens: cast_slice(&m[l..l + self.n_docs * 4])?,
            toff: cast_slice(&m[t..t + (self.n_terms + 1) * 8])?,
            poff: cast_slice(&m[p..p + (self.n_terms + 1) * 8])?,
            docs: cast_slice(&m[d..d + self.n_post * 4])?,
            tfs: cast_slice(&m[f..f + self.n_post * 4])?,
            blob: &m[bl..],
        })
    }

    /// BM25 parameters stored in the index.
    pub fn params(&self) -> Bm25Params {
        Bm25Params {
            k1: self.k1,
            b: self.b,
        }
    }

    /// Number of distinct terms.
    pub fn terms(&self) -> usize {
        self.n_terms
    }

    fn lookup(p: &Parts<'_>, term: &[u8]) -> Option<usize> {
        let n = p.toff.len().saturating_sub(1);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let t = &p.blob[p.toff[mid] as usize..p.toff[mid + 1] as usize];
            match t.cmp(term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Top-`k` chunks for one query text.
    pub fn search_one(&self, text: &str, k: usize) -> Vec<Scored> {
        let Some(p) = self.parts() else {
            return Vec::new();
        };
        let mut qtf: BTreeMap<String, u32> = BTreeMap::new();
        for t in analyze(text) {
            *qtf.entry(t).or_insert(0) += 1;
        }
        let terms: Vec<(usize, u32)> = qtf
            .iter()
            .filter_map(|(t, &c)| Self::lookup(&p, t.as_bytes()).map(|i| (i, c)))
            .collect();
        let touched: usize = terms
            .iter()
            .map(|&(t, _)| (p.poff[t + 1] - p.poff[t]) as usize)
            .sum();
        let n = self.n_docs as f64;
        let (k1, b) = (self.k1 as f64, self.b as f64);
        let avgdl = if self.avgdl > 0.0 { self.avgdl } else { 1.0 };
        let each = |f: &mut dyn FnMut(u32, f32)| {
            for &(t, c) in &terms {
                let (a, e) = (p.poff[t] as usize, p.poff[t + 1] as usize);
                let df = (e - a) as f64;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                for i in a..e {
                    let d = p.docs[i];
                    let tf = p.tfs[i] as f64;
                    let dl = p.doc_lens[d as usize] as f64;
                    let s = idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl));
                    f(d, (s * c as f64) as f32);
                }
            }
        };
        let mut top = TopK::new(k);
        if touched * 8 < self.n_docs {
            let mut acc: HashMap<u32, f32> = HashMap::with_capacity(touched);
            each(&mut |d, s| *acc.entry(d).or_insert(0.0) += s);
            for (id, score) in acc {
                top.push(Scored { id, score });
            }
        } else {
            let mut acc = vec![0f32; self.n_docs];
            let mut hit = vec![false; self.n_docs];
            each(&mut |d, s| {
                acc[d as usize] += s;
                hit[d as usize] = true;
            });
            for (i, (&s, &h)) in acc.iter().zip(&hit).enumerate() {
                if h {
                    top.push(Scored {
                        id: i as u32,
                        score: s,
                    });
                }
            }
        }
        top.into_sorted()
    }

    /// Top-`k` chunks for each query text, in parallel.
    pub fn search(&self, texts: &[&str], k: usize) -> Vec<Vec<Scored>> {
        texts.par_iter().map(|t| self.search_one(t, k)).collect()
    }
}
