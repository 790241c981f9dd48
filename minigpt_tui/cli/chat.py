"""`minigpt-tui --chat RUN`: a conversation in a plain terminal, the Generate tab's headless twin.

Each line is a turn: the model reads only what is new (its state is kept between lines,
see core.generation.chat_session) and its reply streams token by token. Lines starting with "/" are
commands (/help lists them); a line ending in a backslash goes on on the next line (a
newline in the turn). With stdin not a terminal it reads one turn per line and prints each
reply, so a chat can be scripted; --json prints one JSON object per token (as --generate
--json does, with the turn number) and one {"done": true, ...} per reply.

stdout carries the replies only; everything else (the banner, what a command did, warnings)
goes to stderr, so `minigpt-tui --chat RUN < lines.txt > replies.txt` keeps just the text.
A bad command or value is one sentence on stderr and the chat goes on. Ctrl-C stops a reply
(the state keeps what was written); Ctrl-D, /quit or the end of the input ends the chat.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import TextIO

from minigpt_tui.cli.common import USER_ERROR, checkpoint_kind, sampling_value, settings_from
from minigpt_tui.core.generation.sampling_settings import SamplingSettings

SETTING_COMMANDS = {  # command -> the setting it changes (common.sampling_value reads the value)
    "/temp": "temperature", "/temperature": "temperature", "/top-k": "top_k", "/top-p": "top_p",
    "/min-p": "min_p", "/penalty": "repetition_penalty", "/seed": "seed", "/length": "max_new_tokens",
}
HELP = """\
Type a turn and press Enter; end a line with \\ to go on on the next line (a newline).
  /temp 0.9  /top-k 40  /top-p 0.9  /min-p 0.05  /penalty 1.2  /seed 7  /length 300
  /allow-unk on|off   let the model write tokens its training text never held (<unk>); off by default
  /retry          a new reply in place of the last (the old one is kept: /prev, /next)
  /prev /next     show the other versions of the last reply
  /undo           remove the last exchange (your turn and its replies)
  /mode cowrite | /mode dialogue [YOU [MODEL]] | /mode instruct   how turns join (see /template;
                  instruct: the model's own chat template, for a model that has one)
  /system [TEXT]  show or set the system prompt of instruct mode (/system - removes it)
  /speakers       speaker names found in the corpus, for dialogue
  /template [FIELD VALUE]   show or change the template (user, model, user_tag, model_tag,
                  separator, stops; \\n is a newline); remembered for this run
  /show           the conversation so far      /settings   the sampling settings
  /save           save it in the run folder    /open [N]   list saved ones, or reopen one
  /export FILE    write it as Markdown (.md) or plain text
  /new            start a new conversation (the old one is saved)
  /help  /quit"""


def cmd_chat(args) -> int:
    from minigpt_tui.core.generation.chat import Chat
    from minigpt_tui.core.generation.chat_session import ChatSession
    from minigpt_tui.core.generation.chat_template import RunChat, instruct_problem
    from minigpt_tui.core.generation.conversation import MODES
    from minigpt_tui.core.generation.sampling import Sampler
    from minigpt_tui.core.runs.run_dir import RunDir

    try:
        settings = settings_from(args)  # the sampling options, read as --generate reads them
        checkpoint_kind(args.checkpoint)
        if args.mode not in (None, *MODES):
            raise ValueError(f"--mode must be cowrite, dialogue or instruct, got {args.mode!r}.")
        if args.no_kv_cache:
            raise ValueError("--chat keeps the model's state between turns, so it needs the KV cache; "
                             "drop --no-kv-cache.")
    except ValueError as err:
        print(f"minigpt-tui: {err}", file=sys.stderr)
        return USER_ERROR
    run = RunDir.resolve(args.chat).load(checkpoint=args.checkpoint)
    run_chat = RunChat(run.run_dir, run.tokenizer)
    if args.mode == "instruct" and not run_chat.instruct:
        print(f"minigpt-tui: {instruct_problem(run.tokenizer)}", file=sys.stderr)
        return USER_ERROR
    if args.mode:
        run_chat.template.mode = args.mode
    chat = Chat(ChatSession(Sampler(run.model, run.tokenizer, settings, banned=run.unseen)), run_chat.template, run=run.run_dir.name)
    return Repl(chat, run_chat, run, as_json=args.json, interactive=sys.stdin.isatty()).loop()


class Repl:
    def __init__(self, chat, run_chat, run, as_json: bool = False, interactive: bool = False,
                 stdin: TextIO | None = None, out: TextIO | None = None, err: TextIO | None = None):
        self.chat, self.run_chat, self.run = chat, run_chat, run
        self.as_json, self.interactive = as_json, interactive
        self.stdin, self.out, self.err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
        self.turn = 0  # replies printed (numbers the JSON events)
        if interactive:
            try:
                import readline  # noqa: F401  (Up/Down recall earlier lines, as in any shell)
            except ImportError:
                pass

    def say(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    @property
    def settings(self) -> SamplingSettings:
        return self.chat.session.sampler.settings

    # ---- the loop ------------------------------------------------------------------------------
    def loop(self) -> int:
        t = self.chat.template
        if self.interactive:
            self.say(f"Chatting with {self.run.run_dir.name} ({self.run.checkpoint.stem} checkpoint, step "
                     f"{self.run.step:,}); {t.describe()}. /help lists the commands, Ctrl-D quits.")
        while True:
            try:
                line = self.read()
            except KeyboardInterrupt:
                self.say("")  # a fresh prompt, as a shell gives
                continue
            if line is None:
                return 0
            try:
                if line.startswith("/") and not line.startswith("//"):
                    if self.command(line) == "quit":
                        return 0
                else:
                    self.respond(self.chat.say, line[1:] if line.startswith("//") else line)
            except BrokenPipeError:
                return 0
            except ValueError as err:  # ChatError, TemplateError, ConversationError: one sentence
                self.say(str(err))

    def read(self) -> str | None:
        """One turn: a line, joined with the next while it ends in a backslash; None at the end."""
        parts = []
        while True:
            if self.interactive:
                prompt = "... " if parts else self.prompt()
                try:
                    line = input(prompt)
                except EOFError:
                    self.say("")
                    return None
            else:
                line = self.stdin.readline()
                if not line:
                    return "\n".join(parts) if parts else None
                line = line.rstrip("\r\n")
            if line.endswith("\\") and not line.endswith("\\\\"):
                parts.append(line[:-1])
                continue
            parts.append(line)
            return "\n".join(parts)

    def prompt(self) -> str:
        t = self.chat.template
        return f"{t.user}> " if t.mode == "dialogue" else "> "

    # ---- a reply ---------------------------------------------------------------------------------
    def respond(self, start, *args) -> None:
        from minigpt_tui.core.generation.sampling import prompt_warning

        if args and args[0]:
            warning = prompt_warning(self.chat.session.tokenizer, args[0])
            if warning:
                self.say(f"warning: {warning}")
        stream = start(*args)
        reply = self.chat.last_reply
        self.turn += 1
        out = self.out
        if not self.as_json and reply.prefix:
            out.write(reply.prefix)  # the template's text (a speaker tag) is shown, as it was read
        held = ""  # trailing newlines, written only if more text follows (a reply ends with one newline)
        try:
            for event in stream:
                if self.as_json:
                    out.write(json.dumps({"turn": self.turn, **event.to_dict()}, ensure_ascii=False) + "\n")
                else:
                    text = held + event.text
                    body = text.rstrip("\n")
                    held = text[len(body):]
                    out.write(body)
                out.flush()
        except KeyboardInterrupt:
            stream.close()  # the state keeps what was written
            self.say("\n[stopped]")
        stats = self.chat.session.stats
        if self.as_json:
            i, n = self.chat.siblings()
            out.write(json.dumps({"done": True, "turn": self.turn, "new_tokens": stats.new_tokens,
                                  "prompt_tokens": stats.prompt_tokens, "finish_reason": reply.finish,
                                  "tokens_per_s": round(stats.tokens_per_s, 1), "prefix": reply.prefix,
                                  "version": i, "versions": n}) + "\n")
        else:
            out.write("\n")
        out.flush()

    # ---- commands ----------------------------------------------------------------------------------
    def command(self, line: str) -> str | None:
        head, _, rest = line.partition(" ")
        if head.lower() == "/system":  # the rest of the line as typed (quotes and apostrophes kept)
            self.system(rest.strip())
            return None
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise ValueError(f"Could not read the command ({err}); quote values with spaces.") from None
        name, values = words[0].lower(), words[1:]
        chat = self.chat
        if name in ("/quit", "/exit", "/q"):
            return "quit"
        if name in SETTING_COMMANDS:
            self.set_value(name, values)
        elif name == "/help":
            self.say(HELP)
        elif name == "/allow-unk":
            if values not in (["on"], ["off"]):
                raise ValueError("/allow-unk needs on or off, e.g. /allow-unk on.")
            self.settings.allow_unk = values == ["on"]
            self.say("Tokens the training text never held (<unk>) may be written." if self.settings.allow_unk
                     else "Tokens the training text never held (<unk>) are never written.")
        elif name in ("/retry", "/regenerate"):
            self.respond(chat.regenerate)
            i, n = chat.siblings()
            self.say(f"[version {i} of {n}; /prev and /next flip]")
        elif name in ("/prev", "/next"):
            i, n = chat.flip(-1 if name == "/prev" else 1)
            self.say(f"[version {i} of {n}]")
            self.say(chat.last_reply.prefix + chat.last_reply.text.rstrip("\n"))
        elif name == "/undo":
            removed = chat.undo()
            what = f"your turn {short(removed.text)!r} and its replies" if removed else "the last reply"
            self.say(f"Removed {what}.")
        elif name == "/mode":
            self.set_mode(values)
        elif name == "/speakers":
            found = self.run_chat.speakers
            self.say("Speakers found in the corpus: " + ", ".join(found) if found else
                     "No speaker lines (NAME:) found in the corpus; /mode dialogue uses You and Model.")
        elif name == "/template":
            self.template(values)
        elif name == "/settings":
            s = self.settings
            self.say(f"temp {s.temperature:g}, top-k {s.top_k or 'off'}, top-p {s.top_p:g}, min-p {s.min_p:g}, "
                     f"penalty {s.repetition_penalty:g}, seed {s.seed}, length {s.max_new_tokens}, "
                     f"allow-unk {'on' if s.allow_unk else 'off'}")
        elif name == "/show":
            self.show()
        elif name == "/save":
            self.save()
        elif name == "/open":
            self.open(values)
        elif name == "/export":
            self.export(values)
        elif name == "/new":
            if chat.conversation.turns:
                self.save()
            chat.new()
            self.say("A new conversation.")
        else:
            raise ValueError(f"Unknown command {name}; /help lists the commands.")
        return None

    def set_value(self, name: str, values: list[str]) -> None:
        setting = SETTING_COMMANDS[name]
        if len(values) != 1:
            raise ValueError(f"{name} needs one value, e.g. {name} {getattr(self.settings, setting)}.")
        value = sampling_value(setting, values[0], name)  # the check --generate makes of its option
        setattr(self.settings, setting, value)
        if setting == "seed":
            self.chat.session.sampler.reseed(value)
        self.say(f"{setting.replace('_', ' ')} = {value}")

    def set_mode(self, values: list[str]) -> None:
        from minigpt_tui.core.generation.chat_template import instruct_problem

        t = self.chat.template
        if not values or values[0] not in ("cowrite", "co-write", "dialogue", "instruct"):
            raise ValueError("/mode needs cowrite, dialogue or instruct, e.g. /mode dialogue ROMEO JULIET.")
        if values[0] == "instruct" and not self.run_chat.instruct:
            raise ValueError(instruct_problem(self.chat.session.tokenizer))
        t.set("mode", "cowrite" if values[0] == "co-write" else values[0])
        for field, name in zip(("user", "model"), values[1:3]):
            t.set(field, name)
        self.remember()
        self.say(f"Mode: {t.describe()}.")
        if t.mode == "dialogue":
            unknown = [n for n in (t.user, t.model) if n not in self.run_chat.speakers]
            if unknown and self.run_chat.speakers:
                self.say(f"(The corpus has no speaker {', '.join(unknown)}; /speakers lists those it has.)")

    def system(self, text: str) -> None:
        """/system: show the system prompt, or set it ("-" removes it); remembered for the run."""
        from minigpt_tui.core.generation.chat_template import shown

        t = self.chat.template
        if text:
            t.set("system", "" if text == "-" else text)
            self.remember()
        where = "" if t.mode == "instruct" else " (used in instruct mode: /mode instruct)"
        self.say(f"System prompt: {shown(t.system)}{where}" if t.system else
                 f"No system prompt{where}; /system TEXT sets one.")

    def template(self, values: list[str]) -> None:
        from minigpt_tui.core.generation.chat_template import EDITABLE, shown

        t = self.chat.template
        if values:
            if len(values) < 2:
                raise ValueError("/template needs a field and a value, e.g. /template stops '\\n\\n'.")
            t.set(values[0], values[1:] if values[0] == "stops" else " ".join(values[1:]))
            self.remember()
        for name in EDITABLE:
            value = getattr(t, name)
            self.say(f"  {name:<10} " + (", ".join(shown(v) for v in value) if isinstance(value, list) else
                                         shown(value) if "tag" in name or name == "separator" else value))
        self.say(f"  {'system':<10} {shown(t.system)}  (instruct mode's system prompt)")

    def remember(self) -> None:
        self.run_chat.template = self.chat.template
        self.run_chat.save()

    def show(self) -> None:
        conv = self.chat.conversation
        for turn in conv.path():
            i, n = conv.sibling_position(turn)
            tag = f"  [version {i} of {n}]" if n > 1 else ""
            self.say(f"{'you' if turn.role == 'user' else 'model'}{tag}: {turn.full!r}")

    def save(self) -> None:
        from minigpt_tui.core.generation.conversation import save_conversation

        path = save_conversation(self.chat.conversation, self.run.run_dir)
        self.say(f"Saved to {path}.")

    def open(self, values: list[str]) -> None:
        from minigpt_tui.core.generation.chat import Chat
        from minigpt_tui.core.generation.conversation import list_conversations, load_conversation

        saved = list_conversations(self.run.run_dir)
        if not values:
            if not saved:
                self.say("No saved conversations for this run yet; /save keeps one.")
            for k, c in enumerate(saved, 1):
                self.say(f"  {k}. {c.date}  {c.turns} turns  {c.title}")
            return
        if not values[0].isdigit() or not 1 <= int(values[0]) <= len(saved):
            raise ValueError(f"/open needs a number from the list (1 to {len(saved)}); /open alone lists them.")
        conv = load_conversation(saved[int(values[0]) - 1].path)
        session = self.chat.session
        session.reset()
        self.chat = Chat(session, self.chat.template, conv)
        self.chat.sync()  # read once: its state is not saved, only its text and tokens
        self.say(f"Reopened {conv.title!r} ({len(conv.path())} turns).")

    def export(self, values: list[str]) -> None:
        from minigpt_tui.core.generation.conversation import export_conversation

        if len(values) != 1:
            raise ValueError("/export needs a file name, e.g. /export chat.md (Markdown) or chat.txt.")
        kind = export_conversation(self.chat.conversation, values[0])
        self.say(f"Exported as {kind} to {values[0]}.")


def short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
