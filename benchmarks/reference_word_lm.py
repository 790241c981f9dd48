"""The reference word-level LM: PyTorch's examples/word_language_model, compact and faithful.

    python benchmarks/reference_word_lm.py                      # the example's defaults, 40 epochs
    python benchmarks/reference_word_lm.py --minutes 30         # stop training after 30 minutes
    python benchmarks/reference_word_lm.py --minutes 0.2 --threads 1   # a smoke test of the script
                                                     # (the validation and test passes still run whole)

What is kept from the example (github.com/pytorch/examples, word_language_model: data.py,
model.py, main.py): the model (nn.LSTM of nlayers over an nn.Embedding, dropout on the
embedding and the output, a Linear decoder, tied weights, uniform init of +-0.1), batchify
and get_batch (bptt 35, the hidden state carried across batches and detached), plain SGD
at lr 20 with gradient clipping 0.25, the learning rate divided by 4 after an epoch that
does not improve the validation loss, the best model kept, and evaluate() as written
(eval batch size 10: ten lanes, each starting from a zero state; the loss is averaged per
predicted token; the tokens that do not fill the last lane are dropped). Word tokens are
data.py's: `line.split() + ['<eos>']` for every line.

What differs, on purpose, so that it trains on exactly the data and vocabulary of a
minigpt-tui word run (the ../shared/data convention): it trains on wiki.valid.tokens,
validates on the first half of wiki.test.tokens' lines and tests on the second half
(the full 2M-word training split is not on this machine, so published WikiText-2
perplexities are not comparable), and its vocabulary is the training text's words only
(data.py adds the words of all three files); a word the training text lacks reads as
<unk>. That is the vocabulary of a minigpt-tui word run with data.vocab_size = 0: every
training word, <unk> and the end of line ("\\n" there, <eos> here).
--minutes bounds the training time (checked after every batch; the epoch then ends
early, is validated, and the best model is tested).

The result is printed with the machine line under it (benchmarks/machine.py: "Machine class:
CPU without native bf16 (AVX2). CPU: ... features avx2 fma ...; torch ... threads; load average
...", the GPU's name and compute capability when it trained on one) and as one JSON line (also
--json's file), machine.info()'s dict under "machine". The matching minigpt-tui run and its
evaluation on the same test text are printed at the end (and in the README's --evaluate section).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py (this script's folder is on sys.path)
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wikitext-2-partial"


# ---- data.py -------------------------------------------------------------------------------


class Dictionary:
    def __init__(self):
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)


def words_of(path: Path) -> list[str]:
    """data.py's Corpus.tokenize: every line's words, then <eos>."""
    words = []
    with open(path, encoding="utf8") as f:
        for line in f:
            words += line.split() + ["<eos>"]
    return words


class Corpus:
    """The training words make the vocabulary (plus <unk>); valid/test map unknown words to <unk>."""

    def __init__(self, train: Path, valid: Path, test: Path):
        self.dictionary = Dictionary()
        self.dictionary.add_word("<unk>")
        train_words = words_of(train)
        for w in train_words:
            self.dictionary.add_word(w)
        self.train = self.ids(train_words)
        self.valid = self.ids(words_of(valid))
        self.test = self.ids(words_of(test))

    def ids(self, words: list[str]) -> torch.Tensor:
        unk = self.dictionary.word2idx["<unk>"]
        return torch.tensor([self.dictionary.word2idx.get(w, unk) for w in words], dtype=torch.int64)


# ---- model.py --------------------------------------------------------------------------------


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type: str, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.5,
                 tie_weights: bool = False):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz: int):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


# ---- main.py ----------------------------------------------------------------------------------


def batchify(data: torch.Tensor, bsz: int, device) -> torch.Tensor:
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)  # trim off the tokens that would not cleanly fit
    return data.view(bsz, -1).t().contiguous().to(device)


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def get_batch(source: torch.Tensor, i: int, bptt: int):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].view(-1)


def evaluate(model, data_source, eval_batch_size: int, bptt: int, ntokens: int) -> float:
    model.eval()
    total_loss = 0.0
    criterion = nn.NLLLoss()
    hidden = model.init_hidden(eval_batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, bptt):
            data, targets = get_batch(data_source, i, bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * criterion(output, targets).item()
    return total_loss / (len(data_source) - 1)


def train_epoch(model, train_data, args, lr: float, epoch: int, deadline: float) -> bool:
    """One epoch (or as much of it as the deadline allows); True if the deadline cut it short."""
    model.train()
    criterion = nn.NLLLoss()
    total_loss = 0.0
    start_time = time.time()
    hidden = model.init_hidden(args.batch_size)
    n_batches = (len(train_data) - 1 + args.bptt - 1) // args.bptt
    for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
        data, targets = get_batch(train_data, i, args.bptt)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total_loss += loss.item()
        if batch % args.log_interval == 0 and batch > 0:
            cur_loss = total_loss / args.log_interval
            elapsed = time.time() - start_time
            print(f"| epoch {epoch:3d} | {batch:5d}/{n_batches:5d} batches | lr {lr:02.2f} | "
                  f"ms/batch {elapsed * 1000 / args.log_interval:5.2f} | loss {cur_loss:5.2f} | "
                  f"ppl {math.exp(cur_loss):8.2f}", flush=True)
            total_loss = 0.0
            start_time = time.time()
        if time.time() > deadline:
            return True
    return False


def write_splits(data: Path, work: Path) -> tuple[Path, Path, Path]:
    """(train, valid, test) files of the ../shared/data convention, the halves written to `work`."""
    lines = (data / "wiki.test.tokens").read_text(encoding="utf-8").splitlines(keepends=True)
    work.mkdir(parents=True, exist_ok=True)
    first, second = work / "wiki.test.first-half.tokens", work / "wiki.test.second-half.tokens"
    first.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    second.write_text("".join(lines[len(lines) // 2 :]), encoding="utf-8")
    return data / "wiki.valid.tokens", first, second


def minigpt_commands(train: Path, valid: Path, test: Path, args) -> list[str]:
    sets = [f"data.path={train}", f"data.val_path={valid}", "data.vocab_size=0",
            f"model.n_embd={args.emsize}", f"model.n_layer={args.nlayers}", f"model.context_length={args.bptt}",
            f"model.dropout={args.dropout}", "model.tie_weights=true"]
    train_cmd = "minigpt-tui --train wikitext2-word-lstm " + " ".join(f"--set {s}" for s in sets)
    return [train_cmd + "   # add --set train.max_steps=N to match the time",
            f"minigpt-tui --evaluate RUN --data {test} --batch 10   # RUN: the name --train printed"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="folder with wiki.valid.tokens and wiki.test.tokens")
    p.add_argument("--work", type=Path, default=None, help="where the two halves of the test file are written")
    p.add_argument("--model", default="LSTM", choices=["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
    p.add_argument("--emsize", type=int, default=200)
    p.add_argument("--nhid", type=int, default=200)
    p.add_argument("--nlayers", type=int, default=2)
    p.add_argument("--lr", type=float, default=20)
    p.add_argument("--clip", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch_size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--no-tied", dest="tied", action="store_false", help="untie the weights (tied by default here)")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--log-interval", type=int, default=200)
    p.add_argument("--minutes", type=float, default=None, help="stop training after this many minutes")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    work = args.work or Path(tempfile.gettempdir()) / "reference_word_lm"
    train_path, valid_path, test_path = write_splits(args.data, work)
    corpus = Corpus(train_path, valid_path, test_path)
    eval_batch_size = 10
    train_data = batchify(corpus.train, args.batch_size, device)
    val_data = batchify(corpus.valid, eval_batch_size, device)
    test_data = batchify(corpus.test, eval_batch_size, device)
    ntokens = len(corpus.dictionary)
    model = RNNModel(args.model, ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied).to(device)
    print(f"vocabulary {ntokens:,} words; train {len(corpus.train):,}, valid {len(corpus.valid):,}, "
          f"test {len(corpus.test):,} tokens; {sum(p.numel() for p in model.parameters()):,} parameters on {device}")

    started = time.time()
    deadline = started + args.minutes * 60 if args.minutes is not None else math.inf
    lr = args.lr
    best_val_loss = None
    best_state = copy.deepcopy(model.state_dict())
    epochs = 0
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.time()
        cut = train_epoch(model, train_data, args, lr, epoch, deadline)
        epochs = epoch
        val_loss = evaluate(model, val_data, eval_batch_size, args.bptt, ntokens)
        print("-" * 89)
        print(f"| end of epoch {epoch:3d} | time: {time.time() - epoch_start:5.2f}s | valid loss {val_loss:5.2f} | "
              f"valid ppl {math.exp(val_loss):8.2f}{' | time budget reached' if cut else ''}")
        print("-" * 89, flush=True)
        if best_val_loss is None or val_loss < best_val_loss:
            best_state = copy.deepcopy(model.state_dict())
            best_val_loss = val_loss
        else:
            lr /= 4.0  # anneal the learning rate if no improvement has been seen on the validation set
        if cut:
            break
    train_s = time.time() - started

    model.load_state_dict(best_state)
    if args.model in ("LSTM", "GRU"):
        model.rnn.flatten_parameters()
    test_loss = evaluate(model, test_data, eval_batch_size, args.bptt, ntokens)
    scored = (len(test_data) - 1) * eval_batch_size  # what the example's evaluate() predicts
    chars = len(test_path.read_text(encoding="utf-8"))
    unk = corpus.dictionary.word2idx["<unk>"]
    result = {
        "benchmark": "reference_word_lm", "model": args.model, "emsize": args.emsize, "nhid": args.nhid,
        "nlayers": args.nlayers, "tied": args.tied, "dropout": args.dropout, "bptt": args.bptt,
        "epochs": epochs, "train_s": round(train_s, 1), "device": str(device), "vocab": ntokens,
        "best_valid_loss": best_val_loss, "best_valid_ppl": math.exp(best_val_loss),
        "test_loss": test_loss, "test_ppl": math.exp(test_loss),
        "test_tokens": len(corpus.test), "test_tokens_scored": scored, "test_chars": chars,
        "test_bits_per_char": test_loss * scored / math.log(2) / chars,
        "test_unk_share": float((corpus.test == unk).float().mean()),
        "test_file": str(test_path), "machine": machine.info(str(device)),
    }
    print("=" * 89)
    print(f"| End of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f} | "
          f"{result['test_bits_per_char']:.4f} bits/char")
    print("=" * 89)
    print(machine.summary(result["machine"]))
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("\nThe matching minigpt-tui word model, trained and evaluated on the same text:")
    for line in minigpt_commands(train_path, valid_path, test_path, args):
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
