//! Tiny tokenizers built in code for unit tests: one SentencePiece-style (`▁` words, `<0xNN>` byte
//! fallback, leading-space strip, like Llama 2 / Mistral) and one byte-level BPE (like GPT-2,
//! Qwen, Llama 3). Only decoding matters here, so the vocabularies have no merges.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::{AddedToken, Tokenizer};

use crate::byte_level::byte_level_char;

/// Ids 0..=2 are `<unk>`, `<s>`, `</s>` (special), 3..=258 are `<0x00>`..`<0xFF>`, then words.
pub(crate) fn sentencepiece_tokenizer() -> Tokenizer {
    let mut pieces: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    pieces.extend(
        [
            "▁Hello", "▁world", "▁", "Hello", ",", "!", "▁the", "▁你", "好",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let vocab: Vocab = pieces.into_iter().zip(0..).collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .byte_fallback(true)
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(model);
    tok.with_decoder(Some(Sequence::new(vec![
        Replace::new("▁", " ").unwrap().into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
        Strip::new(' ', 1, 0).into(),
    ])));
    tok.add_special_tokens(["<unk>", "<s>", "</s>"].map(|t| AddedToken::from(t, true)))
        .unwrap();
    tok
}

/// Id `b` (0..=255) is the byte `b`; then a few words; `<|end|>` is special, `<tool>` is an
/// added non-special token.
pub(crate) fn bytelevel_tokenizer() -> Tokenizer {
    let mut pieces: Vec<String> = (0..=255u8)
        .map(|b| byte_level_char(b).to_string())
        .collect();
    pieces.extend(
        ["Ġhello", "Ġworld", "hello", "ĠĠ"]
            .iter()
            .map(|s| s.to_string()),
    );
    let vocab: Vocab = pieces.into_iter().zip(0..).collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(model);
    tok.with_decoder(Some(ByteLevel::default()));
    tok.add_special_tokens([AddedToken::from("<|end|>", true)])
        .unwrap();
    tok.add_tokens([AddedToken::from("<tool>", false)]).unwrap();
    tok
}

#[test]
fn test_tokenizers_decode_as_expected() {
    let sp = sentencepiece_tokenizer();
    let ids: Vec<u32> = ["▁Hello", "▁world", "<0xE4>", "<0xBD>", "<0xA0>"]
        .iter()
        .map(|p| sp.token_to_id(p).unwrap())
        .collect();
    assert_eq!(sp.decode(&ids, true).unwrap(), "Hello world你");
    assert_eq!(sp.token_to_id("<0x41>"), Some(3 + 0x41));

    let bl = bytelevel_tokenizer();
    let ids: Vec<u32> = "héllo\n".bytes().map(u32::from).collect();
    assert_eq!(bl.decode(&ids, true).unwrap(), "héllo\n");
    let end = bl.token_to_id("<|end|>").unwrap();
    assert_eq!(bl.decode(&[104, end], true).unwrap(), "h");
    assert_eq!(bl.decode(&[104, end], false).unwrap(), "h<|end|>");
}
