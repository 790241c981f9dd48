import random

from minigpt_tui.core.data.tokenizer import (
    UNK,
    CharTokenizer,
    WikiTextJoins,
    WordTokenizer,
    load_tokenizer,
    prettify,
    tokenizer_from_json,
)

TEXT = "In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n"


def test_char_round_trip_and_json_round_trip():
    tok = CharTokenizer.train(TEXT)
    assert tok.itos[0] == UNK
    assert tok.decode(tok.encode(TEXT)) == TEXT
    again = tokenizer_from_json(tok.to_json())
    assert isinstance(again, CharTokenizer) and again.itos == tok.itos
    assert again.encode(TEXT) == tok.encode(TEXT)


def test_char_cap_keeps_most_frequent_and_maps_the_rest_to_unk():
    tok = CharTokenizer.train("aaaabbbc", vocab_size=3)
    assert tok.itos == [UNK, "a", "b"]
    assert tok.encode("abcz") == [1, 2, 0, 0]
    assert tok.unknown_symbols("abcz") == ["c", "z"]


def test_word_level_keeps_case_and_punctuation_and_newlines():
    tok = WordTokenizer.train(TEXT)
    assert "God" in tok.stoi and "earth." in tok.stoi and "\n" in tok.stoi
    assert tok.decode(tok.encode(TEXT)) == TEXT.rstrip(" ")
    assert tok.decode(tok.encode("the  earth   was")) == "the earth was"  # whitespace normalised
    again = tokenizer_from_json(tok.to_json())
    assert isinstance(again, WordTokenizer) and again.joiner == " "


def test_word_cap_and_incremental_decoding_matches_whole():
    tok = WordTokenizer.train(TEXT, vocab_size=5)
    assert tok.vocab_size == 5
    ids = tok.encode(TEXT)
    streamed = "".join(tok.piece(i, p) for p, i in zip([None, *ids[:-1]], ids))
    assert streamed == tok.decode(ids)


def test_wikitext_joins_read_back_sensibly():
    assert prettify("a well @-@ known 3 @.@ 5 m , 1 @,@ 000") == "a well-known 3.5 m , 1,000"


def test_streamed_wikitext_joins_match_prettify():
    """Fed piece by piece (a marker held until the next piece), the text is prettify() of the whole."""
    joins = WikiTextJoins()
    assert [joins.feed(p) for p in [" well", " @-@", " known", " 3", " @.@", " 5", " @-@"]] == \
        [" well", "", "-known", " 3", "", ".5", ""]
    assert joins.flush() == " @-@" and joins.flush() == ""  # the stream ended on a marker: kept as written
    rng = random.Random(7)
    vocab = [" the", " @-@", " @.@", " @,@", " 3", " well", "\n", " =", "@-@", ""]
    for _ in range(300):
        pieces = [rng.choice(vocab) for _ in range(rng.randrange(40))]
        joins = WikiTextJoins()
        assert "".join(joins.feed(p) for p in pieces) + joins.flush() == prettify("".join(pieces))


def test_bad_tokenizer_json_is_one_sentence(tmp_path):
    import pytest

    from minigpt_tui.core.errors import TokenizerError

    path = tmp_path / "tokenizer.json"
    path.write_text('{"kind": "bpe"}')
    with pytest.raises(TokenizerError, match="tokenizer.json is not a valid"):
        load_tokenizer(path)
