"""`llmexp chat <run | transformers folder | hf:org/name> [--system TEXT]`: a multi-turn
conversation in the model's chat template, replies streamed token by token.

Each line on stdin is a user turn (so it can be piped); `/reset` starts over, `/exit` or end
of input ends the session.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from llmexp.config.errors import OneLineParser
from llmexp.generate_cli import add_model_options, open_session


class Streamer:
    """Prints a row's tokens as they come; holds back an incomplete UTF-8 character."""

    def __init__(self, session, out=sys.stdout):
        self.session, self.out = session, out
        self.tokens: list[int] = []
        self.shown = 0

    def __call__(self, row: int, token: int) -> None:
        if token in self.session.stop_ids:
            return
        self.tokens.append(token)
        text = self.session.tokenizer.decode(self.tokens)
        if not text.endswith("\ufffd"):
            self.flush()

    def flush(self) -> None:
        """Write what is not shown yet (at the end of a reply: an incomplete character too)."""
        text = self.session.tokenizer.decode(self.tokens)
        self.out.write(text[self.shown:])
        self.out.flush()
        self.shown = len(text)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = OneLineParser(prog="llmexp chat", description=__doc__.split("\n\n")[0])
    add_model_options(parser)
    parser.add_argument("--system", default=None, help="a system prompt opening the conversation")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    session = open_session(args, "llmexp chat")
    from llmexp.data.chat import render

    opening = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(opening)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            break
        if line.strip() == "/reset":
            messages = list(opening)
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        ids = render(session.tokenizer, session.template, messages, generation_prompt=True).ids
        if len(ids) >= session.model.shape.max_seq_len:
            print(f"(the conversation fills the {session.model.shape.max_seq_len}-token context: /reset)", flush=True)
            messages.pop()
            continue
        print("assistant> ", end="", flush=True)
        stream = Streamer(session)
        reply = session.sample([ids], on_token=stream)[0]
        stream.flush()
        print(flush=True)
        messages.append({"role": "assistant", "content": session.text(reply)})


if __name__ == "__main__":
    main()
