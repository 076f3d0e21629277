"""Drives `hearth serve` with the official `openai` Python package, as editors and scripts do.

Usage: python openai_client.py BASE_URL API_KEY
Exits non-zero (with the failed assertion) unless every call behaves as OpenAI's API documents.
"""

import sys

import openai

base_url, api_key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)

# Models: the one loaded model.
models = client.models.list()
ids = [m.id for m in models.data]
assert ids == ["smollm2-135m-instruct"], ids
model = ids[0]

question = [{"role": "user", "content": "What is 2+2?"}]

# Chat, whole answer.
whole = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=24)
choice = whole.choices[0]
assert whole.object == "chat.completion", whole
assert choice.message.role == "assistant", choice
assert choice.message.content.strip(), choice
assert choice.finish_reason in ("stop", "length"), choice
assert whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens > 0, whole.usage
assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens, whole.usage

# Chat, streamed: the same greedy text, in pieces, then a usage chunk.
pieces, finish, usage = [], None, None
for chunk in client.chat.completions.create(
    model=model,
    messages=question,
    temperature=0,
    max_tokens=24,
    stream=True,
    stream_options={"include_usage": True},
):
    assert chunk.object == "chat.completion.chunk", chunk
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
assert "".join(pieces) == choice.message.content, (pieces, choice.message.content)
assert len(pieces) > 1, pieces
assert finish == choice.finish_reason, finish
assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage

# Text parts and a stop sequence.
parts = [{"role": "user", "content": [{"type": "text", "text": "Count from 1 to 10, separated by commas."}]}]
stopped = client.chat.completions.create(model=model, messages=parts, temperature=0, max_tokens=48, stop=["5"])
assert "5" not in stopped.choices[0].message.content, stopped
assert stopped.choices[0].finish_reason == "stop", stopped

# Completions, whole and streamed.
prompt = "def add(a, b):\n"
text = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16)
assert text.object == "text_completion", text
assert text.choices[0].text, text
streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16, stream=True)
    if c.choices
)
assert streamed == text.choices[0].text, (streamed, text.choices[0].text)

# Errors come back as the client's typed exceptions.
try:
    client.chat.completions.create(model=model, messages=question, max_tokens=100_000)
    raise AssertionError("an overflowing request was accepted")
except openai.BadRequestError as e:
    assert e.code == "context_length_exceeded", e
try:
    openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

print("openai client: all calls behaved")
