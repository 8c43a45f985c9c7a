//! The judgments' database: one SQLite file, append-only tables, a versioned schema.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{FeedbackError, Result};

/// The schema this version writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a radit feedback database ("RDFB"): tells it apart from any
/// other SQLite file given by mistake.
const APPLICATION_ID: i64 = 0x5244_4642;

const SCHEMA: &str = "
CREATE TABLE answers (
    id INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    log_p REAL,
    model_label TEXT NOT NULL,
    generator TEXT NOT NULL,
    generator_fingerprint TEXT NOT NULL,
    query_encoder TEXT,
    query_fingerprint TEXT,
    index_identity TEXT,
    index_dir TEXT
);
CREATE TABLE answer_chunks (
    answer_id INTEGER NOT NULL REFERENCES answers(id),
    rank INTEGER NOT NULL,
    chunk_id INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    p_r REAL NOT NULL,
    log_p_lm REAL,
    share REAL,
    PRIMARY KEY (answer_id, rank)
);
CREATE TABLE judgments (
    id INTEGER PRIMARY KEY,
    answer_id INTEGER NOT NULL REFERENCES answers(id),
    created_ms INTEGER NOT NULL,
    reviewer TEXT,
    verdict TEXT CHECK (verdict IN ('right', 'wrong')),
    correction TEXT
);
CREATE TABLE chunk_labels (
    judgment_id INTEGER NOT NULL REFERENCES judgments(id),
    rank INTEGER NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('helpful', 'not_helpful')),
    PRIMARY KEY (judgment_id, rank)
);
CREATE TABLE preferences (
    id INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    reviewer TEXT,
    answer_a INTEGER NOT NULL REFERENCES answers(id),
    answer_b INTEGER NOT NULL REFERENCES answers(id),
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie'))
);
CREATE INDEX judgments_by_answer ON judgments(answer_id);
";

/// Which models produced an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// `base`, `LM-ft`, `R-ft` or `LM-ft + R-ft`.
    pub label: String,
    /// Where the generator's weights come from.
    pub generator: String,
    /// xxh3 fingerprint of the generator's weights.
    pub generator_fingerprint: String,
    /// Where the query encoder's weights come from (no retrieval: none).
    pub query_encoder: Option<String>,
    /// xxh3 fingerprint of the query encoder's weights.
    pub query_fingerprint: Option<String>,
    /// The index identity (`DocStore::identity`).
    pub index_identity: Option<String>,
    /// The index folder.
    pub index_dir: Option<String>,
}

/// One retrieved chunk as the reviewer saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownChunk {
    /// Chunk id in the index.
    pub chunk_id: u32,
    /// Its document title.
    pub title: String,
    /// The text the generator read (`{title}: {text}`).
    pub text: String,
    /// xxh3 of `text` (`ChunkRecord::text_hash`).
    pub text_hash: String,
    /// p_R(c|x), the retriever's softmax weight.
    pub p_r: f64,
    /// log p_LM(answer | c ∘ x).
    pub log_p_lm: Option<f64>,
    /// This chunk's share of p(answer|x).
    pub share: Option<f64>,
}

/// An answer shown to a reviewer, with everything that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownAnswer {
    /// The question.
    pub question: String,
    /// The ensemble answer.
    pub answer: String,
    /// log p(answer|question).
    pub log_p: Option<f64>,
    /// The models.
    pub models: ModelIdentity,
    /// The chunks, best first.
    pub chunks: Vec<ShownChunk>,
}

/// The reviewer's verdict on an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The answer is right.
    Right,
    /// The answer is wrong.
    Wrong,
}

/// The reviewer's label of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkLabel {
    /// The chunk helps answer the question.
    Helpful,
    /// It does not.
    NotHelpful,
}

/// The reviewer's pick between two answers to one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// The first answer is better.
    A,
    /// The second answer is better.
    B,
    /// Neither is better.
    Tie,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Right => "right",
            Verdict::Wrong => "wrong",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "right" => Some(Verdict::Right),
            "wrong" => Some(Verdict::Wrong),
            _ => None,
        }
    }
}

impl ChunkLabel {
    fn as_str(self) -> &'static str {
        match self {
            ChunkLabel::Helpful => "helpful",
            ChunkLabel::NotHelpful => "not_helpful",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "helpful" => Some(ChunkLabel::Helpful),
            "not_helpful" => Some(ChunkLabel::NotHelpful),
            _ => None,
        }
    }
}

impl Choice {
    fn as_str(self) -> &'static str {
        match self {
            Choice::A => "a",
            Choice::B => "b",
            Choice::Tie => "tie",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "a" => Some(Choice::A),
            "b" => Some(Choice::B),
            "tie" => Some(Choice::Tie),
            _ => None,
        }
    }
}

/// A judgment of one shown answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Judgment {
    /// The answer judged (from [`FeedbackDb::record_answer`]).
    pub answer_id: i64,
    /// Who judged, when given.
    #[serde(default)]
    pub reviewer: Option<String>,
    /// Right or wrong, when said.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// The right answer, when typed.
    #[serde(default)]
    pub correction: Option<String>,
    /// Labels by chunk rank (0 = best).
    #[serde(default)]
    pub chunks: Vec<(u32, ChunkLabel)>,
}

/// A pick between two answers to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    /// The first answer.
    pub answer_a: i64,
    /// The second answer.
    pub answer_b: i64,
    /// Which is better.
    pub choice: Choice,
    /// Who picked, when given.
    #[serde(default)]
    pub reviewer: Option<String>,
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerView {
    /// Its id.
    pub id: i64,
    /// When it was shown (ms since the Unix epoch).
    pub created_ms: i64,
    /// What was shown.
    #[serde(flatten)]
    pub shown: ShownAnswer,
}

/// A stored judgment with the answer it judges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgmentView {
    /// Its id.
    pub id: i64,
    /// When it was saved (ms since the Unix epoch).
    pub created_ms: i64,
    /// The judged answer.
    pub answer: AnswerView,
    /// What the reviewer said.
    pub judgment: Judgment,
}

/// A stored preference with both answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreferenceView {
    /// Its id.
    pub id: i64,
    /// When it was saved (ms since the Unix epoch).
    pub created_ms: i64,
    /// The first answer.
    pub a: AnswerView,
    /// The second answer.
    pub b: AnswerView,
    /// Which is better.
    pub choice: Choice,
    /// Who picked.
    pub reviewer: Option<String>,
}

/// The judgments' database.
pub struct FeedbackDb {
    conn: Connection,
    path: PathBuf,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl FeedbackDb {
    /// Opens the database at `path`, creating it (and its schema) when the file does not
    /// exist. Refuses a file that is not a radit feedback database or has a newer schema.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| FeedbackError::Db {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        let db = Self {
            conn,
            path: path.to_path_buf(),
        };
        db.setup()?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, source: rusqlite::Error) -> FeedbackError {
        FeedbackError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn setup(&self) -> Result<()> {
        let schema_err = |message: String| FeedbackError::Schema {
            path: self.path.clone(),
            message,
        };
        // Reading the header fails here when the file is not SQLite at all.
        let app: i64 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| self.db_err(e))?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.db_err(e))?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| self.db_err(e))?;
        if tables > 0 && app != APPLICATION_ID {
            return Err(schema_err(
                "not a radit feedback database (another SQLite file?)".into(),
            ));
        }
        if version > SCHEMA_VERSION {
            return Err(schema_err(format!(
                "schema version {version} is newer than this radit's ({SCHEMA_VERSION}); \
                 use a newer radit"
            )));
        }
        // WAL: readers never block the writer; FULL: a commit is on disk before it returns,
        // which is what lets the page say "saved".
        let _: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.db_err(e))?;
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.db_err(e))?;
        if tables == 0 {
            self.conn
                .execute_batch(&format!(
                    "BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; \
                     PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    /// Every row of `sql` as a tuple of its columns.
    fn rows<T>(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<T>>
    where
        T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
    {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.db_err(e))?;
        stmt.query_map(params, |r| T::try_from(r))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<T>>>())
            .map_err(|e| self.db_err(e))
    }

    /// Records an answer as shown; returns its id.
    pub fn record_answer(&mut self, shown: &ShownAnswer) -> Result<i64> {
        let path = self.path.clone();
        let err = |source| FeedbackError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let m = &shown.models;
        tx.execute(
            "INSERT INTO answers (created_ms, question, answer, log_p, model_label, generator, \
             generator_fingerprint, query_encoder, query_fingerprint, index_identity, index_dir) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                now_ms(),
                shown.question,
                shown.answer,
                shown.log_p,
                m.label,
                m.generator,
                m.generator_fingerprint,
                m.query_encoder,
                m.query_fingerprint,
                m.index_identity,
                m.index_dir
            ],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        for (rank, c) in shown.chunks.iter().enumerate() {
            tx.execute(
                "INSERT INTO answer_chunks (answer_id, rank, chunk_id, title, text, text_hash, \
                 p_r, log_p_lm, share) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    rank as i64,
                    c.chunk_id,
                    c.title,
                    c.text,
                    c.text_hash,
                    c.p_r,
                    c.log_p_lm,
                    c.share
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// Records a judgment, after checking that its answer exists and every labelled rank is
    /// one of its chunks; returns its id once committed.
    pub fn record_judgment(&mut self, j: &Judgment) -> Result<i64> {
        let answer = self
            .answer(j.answer_id)?
            .ok_or(FeedbackError::UnknownAnswer(j.answer_id))?;
        let n = answer.shown.chunks.len();
        let mut seen = vec![false; n];
        for &(rank, _) in &j.chunks {
            let r = rank as usize;
            if r >= n {
                return Err(FeedbackError::Invalid(format!(
                    "answer {} has {n} chunk(s); there is no chunk of rank {rank}",
                    j.answer_id
                )));
            }
            if std::mem::replace(&mut seen[r], true) {
                return Err(FeedbackError::Invalid(format!(
                    "chunk of rank {rank} is labelled twice"
                )));
            }
        }
        let correction = j
            .correction
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        if j.verdict.is_none() && correction.is_none() && j.chunks.is_empty() {
            return Err(FeedbackError::Invalid(
                "the judgment is empty: give a verdict, a correction or a chunk label".into(),
            ));
        }
        let path = self.path.clone();
        let err = |source| FeedbackError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO judgments (answer_id, created_ms, reviewer, verdict, correction) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                j.answer_id,
                now_ms(),
                j.reviewer
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty()),
                j.verdict.map(Verdict::as_str),
                correction
            ],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        for &(rank, label) in &j.chunks {
            tx.execute(
                "INSERT INTO chunk_labels (judgment_id, rank, label) VALUES (?1, ?2, ?3)",
                params![id, rank, label.as_str()],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// Records a preference between two answers to the same question; returns its id.
    pub fn record_preference(&mut self, p: &Preference) -> Result<i64> {
        let a = self
            .answer(p.answer_a)?
            .ok_or(FeedbackError::UnknownAnswer(p.answer_a))?;
        let b = self
            .answer(p.answer_b)?
            .ok_or(FeedbackError::UnknownAnswer(p.answer_b))?;
        if p.answer_a == p.answer_b {
            return Err(FeedbackError::Invalid(
                "a preference needs two different answers".into(),
            ));
        }
        if crate::question_key(&a.shown.question) != crate::question_key(&b.shown.question) {
            return Err(FeedbackError::Invalid(format!(
                "answers {} and {} answer different questions",
                p.answer_a, p.answer_b
            )));
        }
        self.conn
            .execute(
                "INSERT INTO preferences (created_ms, reviewer, answer_a, answer_b, choice) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    now_ms(),
                    p.reviewer
                        .as_deref()
                        .map(str::trim)
                        .filter(|r| !r.is_empty()),
                    p.answer_a,
                    p.answer_b,
                    p.choice.as_str()
                ],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The answer of `id`, with its chunks.
    pub fn answer(&self, id: i64) -> Result<Option<AnswerView>> {
        let row = self
            .conn
            .query_row(
                "SELECT created_ms, question, answer, log_p, model_label, generator, \
                 generator_fingerprint, query_encoder, query_fingerprint, index_identity, \
                 index_dir FROM answers WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        ShownAnswer {
                            question: r.get(1)?,
                            answer: r.get(2)?,
                            log_p: r.get(3)?,
                            models: ModelIdentity {
                                label: r.get(4)?,
                                generator: r.get(5)?,
                                generator_fingerprint: r.get(6)?,
                                query_encoder: r.get(7)?,
                                query_fingerprint: r.get(8)?,
                                index_identity: r.get(9)?,
                                index_dir: r.get(10)?,
                            },
                            chunks: Vec::new(),
                        },
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        let Some((created_ms, mut shown)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT chunk_id, title, text, text_hash, p_r, log_p_lm, share \
                 FROM answer_chunks WHERE answer_id = ?1 ORDER BY rank",
            )
            .map_err(|e| self.db_err(e))?;
        let chunks = stmt
            .query_map([id], |r| {
                Ok(ShownChunk {
                    chunk_id: r.get(0)?,
                    title: r.get(1)?,
                    text: r.get(2)?,
                    text_hash: r.get(3)?,
                    p_r: r.get(4)?,
                    log_p_lm: r.get(5)?,
                    share: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db_err(e))?;
        shown.chunks = chunks;
        Ok(Some(AnswerView {
            id,
            created_ms,
            shown,
        }))
    }

    /// Judgments, newest first: all of them (`limit` none) or the last `limit`.
    pub fn judgments(&self, limit: Option<usize>) -> Result<Vec<JudgmentView>> {
        let limit = limit.map_or(-1, |l| l as i64);
        type JudgmentRow = (
            i64,
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<JudgmentRow> = self.rows(
            "SELECT id, answer_id, created_ms, reviewer, verdict, correction \
             FROM judgments ORDER BY id DESC LIMIT ?1",
            [limit],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, answer_id, created_ms, reviewer, verdict, correction) in rows {
            let answer = self
                .answer(answer_id)?
                .ok_or(FeedbackError::UnknownAnswer(answer_id))?;
            let labels: Vec<(u32, String)> = self.rows(
                "SELECT rank, label FROM chunk_labels WHERE judgment_id = ?1 ORDER BY rank",
                [id],
            )?;
            let chunks = labels
                .into_iter()
                .filter_map(|(rank, l)| ChunkLabel::parse(&l).map(|l| (rank, l)))
                .collect();
            out.push(JudgmentView {
                id,
                created_ms,
                judgment: Judgment {
                    answer_id,
                    reviewer,
                    verdict: verdict.as_deref().and_then(Verdict::parse),
                    correction,
                    chunks,
                },
                answer,
            });
        }
        Ok(out)
    }

    /// Every preference, oldest first.
    pub fn preferences(&self) -> Result<Vec<PreferenceView>> {
        type PreferenceRow = (i64, i64, Option<String>, i64, i64, String);
        let rows: Vec<PreferenceRow> = self.rows(
            "SELECT id, created_ms, reviewer, answer_a, answer_b, choice \
             FROM preferences ORDER BY id",
            [],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, created_ms, reviewer, a, b, choice) in rows {
            let (Some(av), Some(bv), Some(choice)) =
                (self.answer(a)?, self.answer(b)?, Choice::parse(&choice))
            else {
                continue;
            };
            out.push(PreferenceView {
                id,
                created_ms,
                a: av,
                b: bv,
                choice,
                reviewer,
            });
        }
        Ok(out)
    }

    /// The question of every judgment, as typed (one entry per judgment): what a queue needs
    /// to say how often a question was judged, without reading answers and chunks.
    pub fn judged_questions(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = self.rows(
            "SELECT a.question FROM judgments j JOIN answers a ON a.id = j.answer_id",
            [],
        )?;
        Ok(rows.into_iter().map(|(q,)| q).collect())
    }

    /// Counts of rows: answers shown, judgments, preferences.
    pub fn counts(&self) -> Result<(usize, usize, usize)> {
        let count = |table: &str| -> Result<usize> {
            self.conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as usize)
                .map_err(|e| self.db_err(e))
        };
        Ok((
            count("answers")?,
            count("judgments")?,
            count("preferences")?,
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn shown(question: &str, answer: &str, generator: &str) -> ShownAnswer {
        ShownAnswer {
            question: question.into(),
            answer: answer.into(),
            log_p: Some(-1.5),
            models: ModelIdentity {
                label: "LM-ft + R-ft".into(),
                generator: generator.into(),
                generator_fingerprint: format!("fp-{generator}"),
                query_encoder: Some("enc".into()),
                query_fingerprint: Some("fp-enc".into()),
                index_identity: Some("idx".into()),
                index_dir: Some("/run/index".into()),
            },
            chunks: (0..3)
                .map(|i| ShownChunk {
                    chunk_id: 10 + i,
                    title: format!("T{i}"),
                    text: format!("T{i}: text {i}"),
                    text_hash: format!("h{i}"),
                    p_r: [0.5, 0.3, 0.2][i as usize],
                    log_p_lm: Some(-(i as f64) - 1.0),
                    share: Some([0.7, 0.2, 0.1][i as usize]),
                })
                .collect(),
        }
    }

    #[test]
    fn answers_judgments_and_preferences_round_trip_through_a_reopened_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.sqlite");
        let (a, b) = {
            let mut db = FeedbackDb::open(&path).unwrap();
            let a = db.record_answer(&shown("Who?", "Ann", "g1")).unwrap();
            let b = db.record_answer(&shown("who? ", "Bob", "g2")).unwrap();
            db.record_judgment(&Judgment {
                answer_id: a,
                reviewer: Some(" ana ".into()),
                verdict: Some(Verdict::Wrong),
                correction: Some(" Bob ".into()),
                chunks: vec![(0, ChunkLabel::NotHelpful), (2, ChunkLabel::Helpful)],
            })
            .unwrap();
            db.record_preference(&Preference {
                answer_a: a,
                answer_b: b,
                choice: Choice::B,
                reviewer: None,
            })
            .unwrap();
            (a, b)
        };
        let db = FeedbackDb::open(&path).unwrap();
        assert_eq!(db.counts().unwrap(), (2, 1, 1));
        let j = &db.judgments(None).unwrap()[0];
        assert_eq!(j.answer.id, a);
        assert_eq!(j.answer.shown, shown("Who?", "Ann", "g1"));
        assert_eq!(j.judgment.reviewer.as_deref(), Some("ana"));
        assert_eq!(j.judgment.correction.as_deref(), Some("Bob"));
        assert_eq!(j.judgment.verdict, Some(Verdict::Wrong));
        assert_eq!(
            j.judgment.chunks,
            vec![(0, ChunkLabel::NotHelpful), (2, ChunkLabel::Helpful)]
        );
        let p = &db.preferences().unwrap()[0];
        assert_eq!((p.a.id, p.b.id, p.choice), (a, b, Choice::B));
        let version: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn invalid_judgments_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = FeedbackDb::open(&dir.path().join("fb.sqlite")).unwrap();
        let a = db.record_answer(&shown("Who?", "Ann", "g")).unwrap();
        let c = db.record_answer(&shown("When?", "1900", "g")).unwrap();
        let judge = |chunks: Vec<(u32, ChunkLabel)>| Judgment {
            answer_id: a,
            reviewer: None,
            verdict: None,
            correction: None,
            chunks,
        };
        let e = db
            .record_judgment(&judge(vec![(3, ChunkLabel::Helpful)]))
            .unwrap_err();
        assert!(e.to_string().contains("no chunk of rank 3"), "{e}");
        let e = db
            .record_judgment(&judge(vec![
                (1, ChunkLabel::Helpful),
                (1, ChunkLabel::NotHelpful),
            ]))
            .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = db.record_judgment(&judge(vec![])).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = db
            .record_judgment(&Judgment {
                answer_id: 99,
                ..judge(vec![(0, ChunkLabel::Helpful)])
            })
            .unwrap_err();
        assert!(matches!(e, FeedbackError::UnknownAnswer(99)), "{e}");
        let e = db
            .record_preference(&Preference {
                answer_a: a,
                answer_b: c,
                choice: Choice::A,
                reviewer: None,
            })
            .unwrap_err();
        assert!(e.to_string().contains("different questions"), "{e}");
        assert_eq!(db.counts().unwrap(), (2, 0, 0));
    }

    #[test]
    fn foreign_and_newer_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("notes.txt");
        std::fs::write(
            &junk,
            "this is not a database, just some notes\n".repeat(200),
        )
        .unwrap();
        let e = FeedbackDb::open(&junk).err().unwrap().to_string();
        assert!(e.contains("notes.txt"), "{e}");
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        let e = FeedbackDb::open(&other).err().unwrap().to_string();
        assert!(e.contains("not a radit feedback database"), "{e}");
        let newer = dir.path().join("newer.sqlite");
        drop(FeedbackDb::open(&newer).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute_batch("PRAGMA user_version = 7;")
            .unwrap();
        let e = FeedbackDb::open(&newer).err().unwrap().to_string();
        assert!(e.contains("schema version 7 is newer"), "{e}");
    }
}
