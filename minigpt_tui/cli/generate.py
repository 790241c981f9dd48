"""`minigpt-tui --generate RUN --prompt TEXT [sampling options]`: a continuation streamed token
by token as plain text, or with --json as one JSON object per token."""

from __future__ import annotations

import json
import os
import sys

from minigpt_tui.cli.common import USER_ERROR, checkpoint_kind, settings_from


def cmd_generate(args) -> int:
    """Stream a continuation of --prompt: plain text flushed token by token, or JSON lines.

    Plain output is the prompt, then the continuation, then a newline; a summary
    line goes to stderr. --json prints one object per token (index, token_id,
    text, prob, top) and a last one {"done": true, ...}. Word-level output shows
    WikiText's " @-@ " joins as "-" in plain text (JSON keeps the raw tokens).
    """
    from minigpt_tui.core.data.tokenizer import WikiTextJoins, unk_token_id
    from minigpt_tui.core.generation.sampling import Sampler, prompt_warning
    from minigpt_tui.core.runs.run_dir import RunDir

    try:
        settings = settings_from(args)
        checkpoint_kind(args.checkpoint)
    except ValueError as err:
        print(f"minigpt-tui: {err}", file=sys.stderr)
        return USER_ERROR

    run = RunDir.resolve(args.generate).load(checkpoint=args.checkpoint)
    warning = prompt_warning(run.tokenizer, args.prompt)
    if warning:
        print(f"minigpt-tui: warning: {warning}", file=sys.stderr)
    sampler = Sampler(run.model, run.tokenizer, settings, use_cache=not args.no_kv_cache, banned=run.unseen)
    out = sys.stdout
    # Word-level plain text shows WikiText's joins as the app does (the same helper).
    joins = WikiTextJoins() if run.tokenizer.kind == "word" else None
    unk_id = unk_token_id(run.tokenizer)
    unk = 0  # how often the model wrote <unk> (one its training text held, or with --allow-unk)
    try:
        if args.json:
            for event in sampler.generate(args.prompt):
                out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
                out.flush()
        else:
            out.write(args.prompt)
            out.flush()
            for event in sampler.generate(args.prompt):
                unk += event.token_id == unk_id
                out.write(joins.feed(event.text) if joins else event.text)
                out.flush()
    except KeyboardInterrupt:
        sampler.stats.finish_reason = "interrupted"
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit-time
        # flush of stdout from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    stats = sampler.stats
    if args.json:
        out.write(json.dumps({"done": True, "new_tokens": stats.new_tokens, "prompt_tokens": stats.prompt_tokens,
                              "finish_reason": stats.finish_reason, "tokens_per_s": round(stats.tokens_per_s, 1),
                              "checkpoint": run.checkpoint.stem, "step": run.step}) + "\n")
    else:
        out.write((joins.flush() if joins else "") + "\n")
        cache = "no KV cache" if args.no_kv_cache else "KV cache"
        why = f", {unk} of them <unk>" if unk else ""
        why += {"stop": ", stopped at a stop string", "interrupted": ", interrupted"}.get(stats.finish_reason, "")
        print(f"[{stats.new_tokens} tokens at {stats.tokens_per_s:,.0f} tokens/s ({cache}){why}; "
              f"checkpoint {run.checkpoint.stem} at step {run.step}]", file=sys.stderr)
    out.flush()
    return 130 if stats.finish_reason == "interrupted" else 0
