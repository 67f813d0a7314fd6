"""The official `openai` Python client against `pareil serve`.

Run by tests/server.rs with the server's base URL, token and model name;
prints one JSON object of what the client saw, so the Rust test checks the
values. Exits non-zero (with the exception) on any client-side failure.
"""

import json
import sys

import openai

base, token, model = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0)

# The client's default: it asks for base64 and decodes it itself.
default = client.embeddings.create(model=model, input=["bonjour", "hello world"])
as_float = client.embeddings.create(
    model=model, input=["bonjour", "hello world"], encoding_format="float"
)
single = client.embeddings.create(model=model, input="bonjour")

try:
    client.embeddings.create(model="not-" + model, input="x")
    wrong_model = None
except openai.NotFoundError as e:
    wrong_model = {"status": e.status_code, "message": str(e)}

try:
    openai.OpenAI(
        base_url=base + "/v1", api_key="wrong-" + token, max_retries=0
    ).embeddings.create(model=model, input="x")
    wrong_token = None
except openai.AuthenticationError as e:
    wrong_token = {"status": e.status_code}

print(
    json.dumps(
        {
            "object": default.object,
            "model": default.model,
            "indexes": [d.index for d in default.data],
            "default": [list(d.embedding) for d in default.data],
            "float": [list(d.embedding) for d in as_float.data],
            "single": list(single.data[0].embedding),
            "prompt_tokens": default.usage.prompt_tokens,
            "total_tokens": default.usage.total_tokens,
            "wrong_model": wrong_model,
            "wrong_token": wrong_token,
        }
    )
)
