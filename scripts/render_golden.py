#!/usr/bin/env python3
"""Renders the chat-template and tokenizer goldens of crates/preprocess/tests/golden/.

Python `transformers` is the reference: every expected string is what
`tokenizer.apply_chat_template(..., tokenize=False)` returns, every expected id list is what
`tokenizers` (the library transformers' fast tokenizers wrap) returns; the script checks that
transformers' own `encode` agrees.

Run by hand after changing a case (the goldens are committed; the test never runs Python):

    scripts/fetch-test-models.sh
    python3 -m venv /tmp/golden-venv && /tmp/golden-venv/bin/pip install transformers jinja2
    /tmp/golden-venv/bin/python scripts/render_golden.py

No torch needed. Model folders come from <repo>/models (or $SWITCHYARD_TEST_MODELS).
"""

import copy
import json
import os
import sys
from pathlib import Path

import jinja2
import tokenizers
import transformers
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("SWITCHYARD_TEST_MODELS", REPO / "models"))
OUT = REPO / "crates" / "preprocess" / "tests" / "golden"

# ---------------------------------------------------------------------------------------------
# Conversations

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT = {"role": "assistant", "content": "The capital of France is Paris."}
USER2 = {"role": "user", "content": "And of Germany?"}

UNICODE_USER = {
    "role": "user",
    "content": "日本語のテキスト 🎉👍🏽 naïve café — «quotes» \"double\" 'single' \\ backslash\ttab\nnew line",
}
UNICODE_ASSISTANT = {"role": "assistant", "content": "你好！😀 Ελληνικά, עברית, العربية."}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web — returns the top results (ünïcödé).",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "max_results": {"type": "integer", "default": 5, "minimum": 1},
                    "threshold": {"type": "number", "default": 0.5},
                    "safe": {"type": "boolean", "default": True},
                },
                "required": ["query"],
            },
        },
    },
]


def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER_CALL_DICT = tool_call("call_1", "get_weather", {"city": "Paris", "unit": "celsius"})
WEATHER_CALL_STR = tool_call("call_1", "get_weather", '{"city": "Paris", "unit": "celsius"}')
SEARCH_CALL_STR = tool_call("call_2", "search", '{"query": "Berlin population", "max_results": 3}')
WEATHER_RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "clear"}'}
SEARCH_RESULT = {"role": "tool", "tool_call_id": "call_2", "content": "Berlin has 3.7 million inhabitants."}
WEATHER_QUESTION = {"role": "user", "content": "What's the weather in Paris? Also search Berlin's population."}


def case(name, messages, add_generation_prompt=True, tools=None, kwargs=None, continue_final_message=False):
    return {
        "name": name,
        "input": {
            "messages": messages,
            "tools": tools,
            "add_generation_prompt": add_generation_prompt,
            "continue_final_message": continue_final_message,
            "kwargs": kwargs or {},
        },
    }


def continue_case(name, messages, **kwargs):
    return case(name, messages, add_generation_prompt=False, continue_final_message=True, **kwargs)


def common_cases():
    return [
        case("system_user", [SYSTEM, USER]),
        case("user_only", [USER]),
        case("user_only_no_generation_prompt", [USER], add_generation_prompt=False),
        case("multi_turn", [SYSTEM, USER, ASSISTANT, USER2]),
        case("ends_with_assistant_no_generation_prompt", [USER, ASSISTANT], add_generation_prompt=False),
        case("unicode_emoji_cjk", [UNICODE_USER, UNICODE_ASSISTANT, {"role": "user", "content": "Ещё раз?"}]),
        case(
            "whitespace_around_content",
            [
                {"role": "user", "content": "  leading and trailing spaces \n\n"},
                {"role": "assistant", "content": "\n answer \n"},
                {"role": "user", "content": "\tok\t"},
            ],
        ),
        case("empty_user_content", [{"role": "user", "content": ""}]),
        case("unused_kwarg", [USER], kwargs={"some_unused_flag": True}),
        case("null_valued_key_dropped", [{"role": "user", "content": "hi", "name": None}]),
        continue_case("continue_final_message", [USER, {"role": "assistant", "content": "The capital of France"}]),
        continue_case("continue_final_message_trailing_space", [USER, {"role": "assistant", "content": "The capital is "}]),
        case(
            "error_continue_final_message_with_generation_prompt",
            [USER, {"role": "assistant", "content": "The"}],
            continue_final_message=True,
        ),
    ]


def qwen3_cases():
    return common_cases() + [
        case("tools_with_system", [SYSTEM, WEATHER_QUESTION], tools=TOOLS),
        case("tools_without_system", [WEATHER_QUESTION], tools=TOOLS),
        case(
            "tool_call_round_trip_dict_arguments",
            [WEATHER_QUESTION, {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL_DICT]}, WEATHER_RESULT],
            tools=TOOLS,
        ),
        case(
            "parallel_tool_calls_string_arguments",
            [
                WEATHER_QUESTION,
                {"role": "assistant", "content": "Let me check.", "tool_calls": [WEATHER_CALL_STR, SEARCH_CALL_STR]},
                WEATHER_RESULT,
                SEARCH_RESULT,
            ],
            tools=TOOLS,
        ),
        case(
            "tool_result_then_answer_then_user",
            [
                WEATHER_QUESTION,
                {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL_STR]},
                WEATHER_RESULT,
                {"role": "assistant", "content": "It is 21 °C and clear in Paris."},
                {"role": "user", "content": "Thanks!"},
            ],
            tools=TOOLS,
        ),
        case(
            "reasoning_content_after_last_query",
            [
                WEATHER_QUESTION,
                {
                    "role": "assistant",
                    "content": "",
                    "reasoning_content": "The user wants the weather; call the tool.",
                    "tool_calls": [WEATHER_CALL_STR],
                },
                WEATHER_RESULT,
            ],
            tools=TOOLS,
        ),
        case(
            "think_block_in_history_is_stripped",
            [
                USER,
                {"role": "assistant", "content": "<think>\nParis is the capital.\n</think>\n\nThe capital is Paris."},
                USER2,
            ],
        ),
        case(
            "think_block_in_final_assistant",
            [USER, {"role": "assistant", "content": "<think>\nEasy.\n</think>\n\nParis."}],
            add_generation_prompt=False,
        ),
        case("reasoning_field_alias", [USER, {"role": "assistant", "content": "Paris.", "reasoning": "Known fact."}], add_generation_prompt=False),
        case("enable_thinking_false", [SYSTEM, USER], kwargs={"enable_thinking": False}),
        case("enable_thinking_true", [SYSTEM, USER], kwargs={"enable_thinking": True}),
        case("assistant_content_null_with_tool_calls", [WEATHER_QUESTION, {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL_STR]}, WEATHER_RESULT], tools=TOOLS),
        case("error_content_is_a_list", [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
    ]


def llama3_1_cases():
    return common_cases() + [
        case("date_string_kwarg", [SYSTEM, USER], kwargs={"date_string": "26 Jul 2024"}),
        case("tool_role_message", [USER, {"role": "assistant", "content": "calling"}, {"role": "tool", "content": "42"}]),
        case("content_needs_trim", [{"role": "system", "content": "\n\n  sys  \n"}, {"role": "user", "content": " \t q \n"}]),
    ]


def gemma3_cases():
    return common_cases() + [
        case(
            "content_parts",
            [
                {"role": "user", "content": [{"type": "text", "text": " first part "}, {"type": "text", "text": "second part\n"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                {"role": "user", "content": "plain"},
            ],
        ),
        case(
            "system_as_content_parts",
            [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, USER],
        ),
        continue_case(
            "continue_final_message_content_parts",
            [USER, {"role": "assistant", "content": [{"type": "text", "text": "It is"}, {"type": "text", "text": " Par"}]}],
        ),
        case("error_roles_do_not_alternate", [USER, USER2]),
        case("error_assistant_first", [ASSISTANT, USER]),
        case("error_system_then_assistant", [SYSTEM, ASSISTANT]),
    ]


def deepseek_v3_cases():
    return common_cases() + [
        case("two_system_messages", [SYSTEM, {"role": "system", "content": "Answer in French."}, USER]),
        case(
            "tool_outputs_after_empty_assistant",
            [WEATHER_QUESTION, {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL_STR]}, WEATHER_RESULT, SEARCH_RESULT],
            tools=TOOLS,
        ),
        case(
            "tool_outputs_then_answer",
            [
                WEATHER_QUESTION,
                {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL_STR]},
                WEATHER_RESULT,
                {"role": "assistant", "content": "21 °C."},
            ],
            add_generation_prompt=False,
        ),
        case("assistant_content_null_with_tool_calls", [WEATHER_QUESTION, {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL_STR]}, WEATHER_RESULT], tools=TOOLS),
    ]


# ---------------------------------------------------------------------------------------------
# Feature templates: written for these tests, each exercising jinja2 / transformers behaviour
# that real templates rely on.

FEATURE_TEMPLATES = {
    # Structure of the Llama 3.1 family: a date header with a strftime_now fallback, tools as
    # indented JSON in the first user turn, tool calls as JSON, `ipython` tool results.
    "dated_tools": """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "01 Jan 2000" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
<|header|>system<|sep|>
Today: {{ date_string }}
{% if tools is not none %}Tools are listed with the first question.
{% endif %}
{{- system_message }}<|end|>
{%- if tools is not none and messages | length > 0 %}
    {%- set first = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
<|header|>user<|sep|>
{%- for t in tools %}
{{ t | tojson(indent=4) }}
{% endfor %}
{{- first }}<|end|>
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'assistant' and message.tool_calls is defined %}
<|header|>assistant<|sep|>
        {%- for call in message.tool_calls %}
{"name": "{{ call.function.name }}", "parameters": {{ call.function.arguments | tojson }}}
        {%- endfor %}<|end|>
    {%- elif message.role in ['tool', 'ipython'] %}
<|header|>ipython<|sep|>
        {%- if message.content is mapping or message.content is iterable and message.content is not string %}
{{ message.content | tojson }}
        {%- else %}
{{ message.content }}
        {%- endif %}<|end|>
    {%- else %}
<|header|>{{ message['role'] }}<|sep|>
{{ message['content'] | trim }}<|end|>
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
<|header|>assistant<|sep|>
{% endif %}""",
    "python_string_methods": """{%- set s = messages[0].content %}
strip=[{{ s.strip() }}] lstrip=[{{ s.lstrip() }}] rstrip=[{{ s.rstrip() }}]
strip_chars=[{{ s.strip(' .!') }}] lstrip_nl=[{{ '\\n\\nx\\n'.lstrip('\\n') }}]
upper={{ s.upper() }} lower={{ s.lower() }} title={{ "they're bill's x-ray".title() }} cap={{ 'hELLO wORLD'.capitalize() }}
split={{ s.split() }} split1={{ s.split(None, 1) }} split_comma={{ 'a,b,,c'.split(',') }} rsplit={{ 'a.b.c'.rsplit('.', 1) }}
splitlines={{ 'l1\\nl2\\r\\nl3'.splitlines() }}
replace={{ s.replace('o', '0') }} replace1={{ 'aaa'.replace('a', 'b', 2) }}
starts={{ s.strip().startswith('Hello') }} ends={{ s.strip().endswith(('!', '?')) }}
find={{ s.find('World') }} rfind={{ 'abcabc'.rfind('b') }} count={{ 'banana'.count('an') }}
removeprefix={{ 'prefix-body'.removeprefix('prefix-') }} removesuffix={{ 'body.txt'.removesuffix('.txt') }}
partition={{ 'k=v=w'.partition('=') }} rpartition={{ 'k=v=w'.rpartition('=') }}
center=[{{ 'ab'.center(7, '*') }}] ljust=[{{ 'ab'.ljust(4) }}] rjust=[{{ 'ab'.rjust(4, '0') }}] zfill={{ '-42'.zfill(6) }}
isdigit={{ '123'.isdigit() }} isalpha={{ 'abc'.isalpha() }} isspace={{ ' \\t'.isspace() }} isupper={{ 'ABC'.isupper() }}
join={{ '-'.join(['a', 'b', 'c']) }} format={{ '{} and {}'.format('x', 'y') }}
unicode_upper={{ 'straße é'.upper() }}
{%- set parts = messages[1].content.split('</think>') %}
think_tail=[{{ parts[-1].lstrip('\\n') }}] think_head=[{{ parts[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}]
""",
    "tojson_variants": """{%- set data = messages[0].data %}
default={{ data | tojson }}
indent2={{ data | tojson(indent=2) }}
compact={{ data | tojson(separators=(',', ':')) }}
sorted={{ data | tojson(sort_keys=true) }}
ascii={{ data | tojson(ensure_ascii=true) }}
string={{ "quote\\" backslash\\\\ tab\\t nl\\n é 😀" | tojson }}
scalars={{ 1 | tojson }} {{ 2.5 | tojson }} {{ true | tojson }} {{ none | tojson }} {{ [] | tojson }} {{ {} | tojson }} {{ 1e-7 | tojson }} {{ 12345678901234567890.0 | tojson }}
tools={{ tools | tojson }}
""",
    "control_flow": """{%- set ns = namespace(count=0, last_user='', found=false) %}
{%- for m in messages %}
    {%- if m.role == 'system' %}{% continue %}{% endif %}
    {%- if m.content == 'STOP' %}{% break %}{% endif %}
    {%- set ns.count = ns.count + 1 %}
    {%- if m.role == 'user' %}{% set ns.last_user = m.content %}{% set ns.found = true %}{% endif %}
{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} first={{ loop.first }} last={{ loop.last }} rev={{ loop.revindex }} {{ m['role'] }}: {{ m.content }}
{%- endfor %}
count={{ ns.count }} last_user={{ ns.last_user }} found={{ ns.found }}
reversed={% for m in messages[::-1] %}{{ m.role[0] }}{% endfor %}
tail={% for m in messages[1:] %}{{ m.role[0] }}{% endfor %} head={% for m in messages[:-1] %}{{ m.role[0] }}{% endfor %} step={% for m in messages[::2] %}{{ m.role[0] }}{% endfor %}
len={{ messages | length }} first={{ (messages | first).role }} last={{ (messages | last).role }}
roles={{ messages | map(attribute='role') | join(',') }} users={{ messages | selectattr('role', 'equalto', 'user') | list | length }}
tests: {{ messages[0] is mapping }} {{ messages[0].content is string }} {{ messages is sequence }} {{ messages is iterable }} {{ 3 is number }} {{ none is none }} {{ true is true }} {{ false is false }} {{ 0 is false }} {{ messages[0] is defined }} {{ messages[0].nope is defined }}
in: {{ 'user' in messages | map(attribute='role') | list }} {{ 'x' in 'xyz' }} {{ 'role' in messages[0] }}
dict: {% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %} keys={{ messages[0].keys() | list }} get={{ messages[0].get('missing', 'dflt') }} get2={{ messages[0].get('role') }}
print: {{ true }} {{ none }} {{ [1, 'a', none, true] }} {{ {'k': 'v'} }} {{ 2.0 }} {{ 0.1 + 0.2 }} {{ 1e-05 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ -3 | abs }}
concat: {{ 'a' ~ 1 ~ true ~ none }} {{ 'x' + 'y' }} {{ [1] + [2] }}
filters: {{ 'Hello' | lower }} {{ 'Hello' | upper }} {{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }} {{ 'a-b' | replace('-', '+') }} {{ '3' | int + 1 }} {{ 3 | string }} {{ none | default('d') }} {{ undefined_thing | default('u') }} {{ [3, 1, 2] | sort | join }} {{ ['b', 'a', 'b'] | unique | list | length }} {{ 'text' | length }} {{ '%s-%d' | format('a', 3) }}
dictfn={{ dict(a=1, b='x') | tojson }}
""",
    "undefined_variables": """[{{ not_defined }}]
{%- if not_defined %}truthy{% else %} falsy{% endif %}
{{ not_defined is defined }} {{ not_defined is undefined }} {{ not_defined is none }}
{%- for x in not_defined %}never{% endfor %}
[{{ messages[0].no_such_key }}] {{ messages[0].no_such_key is defined }} {{ not_defined | default('fallback') }}
{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ add_generation_prompt }}
{%- if enable_thinking is defined and enable_thinking is false %} thinking-off{% endif %}
""",
    "generation_blocks": """{%- for message in messages %}
{%- if message.role == 'assistant' %}
<|assistant|>
{%- generation %}
{{ message.content }}<|end|>
{%- endgeneration %}
{% else %}
<|{{ message.role }}|>
{{ message.content }}<|end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|assistant|>
{% endif %}""",
    "raise_on_missing_user": """{%- if messages | selectattr('role', 'equalto', 'user') | list | length == 0 %}
{{- raise_exception('At least one user message is required, got roles: ' ~ (messages | map(attribute='role') | join(', '))) }}
{%- endif %}
{%- for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}""",
    "whitespace_control": """Line one
    {% if true %}
    indented under block
    {% endif %}
{# a comment #}
  {#- trimmed comment -#}
{%+ if true %}kept lstrip{% endif %}
{% for m in messages %}
  - {{ m.role }}
{% endfor %}
{{- ' trimmed left' }}   {{- ' and right' -}}   !
{% raw %}{{ not rendered }}{% endraw %}
end with newline
""",
    "strftime_available": """{%- if strftime_now is defined %}year_digits={{ strftime_now('%Y') | length }} month_ok={{ strftime_now('%m') | int >= 1 }}{% endif %}
{{- ' ' ~ bos_token ~ '|' ~ eos_token }}""",
}


def feature_cases():
    conversation = [SYSTEM, USER, ASSISTANT, USER2]
    cases = []
    for name in ["dated_tools"]:
        cases.append(
            dict(case("dated_tools_pinned_date", [SYSTEM, WEATHER_QUESTION], tools=TOOLS, kwargs={"date_string": "26 Jul 2024"}), template=name)
        )
        cases.append(
            dict(
                case(
                    "dated_tools_round_trip",
                    [
                        WEATHER_QUESTION,
                        {"role": "assistant", "tool_calls": [WEATHER_CALL_DICT]},
                        {"role": "ipython", "content": {"temperature": 21, "ok": True}},
                        {"role": "tool", "content": "plain text result"},
                    ],
                    tools=TOOLS,
                    kwargs={"date_string": "01 Feb 2025"},
                ),
                template=name,
            )
        )
        cases.append(dict(case("dated_tools_no_tools", [SYSTEM, USER], kwargs={"date_string": "26 Jul 2024"}), template=name))
    cases.append(
        dict(
            case(
                "python_string_methods",
                [
                    {"role": "user", "content": "  Hello World, hello moon!  "},
                    {"role": "assistant", "content": "<think>\n\nreasoning here\n\n</think>\n\nfinal answer"},
                ],
            ),
            template="python_string_methods",
        )
    )
    data = {
        "b": [1, 2.5, -0.0, 1e20, True, None],
        "a": {"nested": {"deeper": "é"}, "empty_list": [], "empty_obj": {}},
        "text": "line\nbreak \u0001 \u007f \u2028 😀",
    }
    cases.append(dict(case("tojson_variants", [{"role": "user", "content": "x", "data": data}], tools=TOOLS), template="tojson_variants"))
    cases.append(
        dict(
            case("control_flow", [SYSTEM, USER, ASSISTANT, USER2, {"role": "user", "content": "STOP"}, USER]),
            template="control_flow",
        )
    )
    cases.append(dict(case("undefined_variables", [USER]), template="undefined_variables"))
    cases.append(dict(case("undefined_variables_with_kwarg", [USER], kwargs={"enable_thinking": False}), template="undefined_variables"))
    cases.append(dict(case("generation_blocks", conversation), template="generation_blocks"))
    cases.append(dict(case("raise_exception_passes", [SYSTEM, USER]), template="raise_on_missing_user"))
    cases.append(dict(case("raise_exception_raises", [SYSTEM, ASSISTANT]), template="raise_on_missing_user"))
    cases.append(dict(case("whitespace_control", [SYSTEM, USER]), template="whitespace_control"))
    cases.append(dict(case("strftime_available", [USER]), template="strftime_available"))
    return cases


# ---------------------------------------------------------------------------------------------
# Tokenizer goldens

ENCODE_TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog. 0123456789 3.14159 1,000,000 2024-07-26",
    "a  b   c\t\td\n\n\ne    \n  f      ",
    "naïve café Straße — 日本語 中文 한국어 Ελληνικά עברית العربية 🎉👍🏽👨‍👩‍👧",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])  # {'a': 1}\n",
    "",
    " leading space and trailing space ",
]


def run_template(tok, template, c):
    inp = c["input"]
    kwargs = dict(inp["kwargs"])
    try:
        rendered = tok.apply_chat_template(
            copy.deepcopy(inp["messages"]),
            tools=copy.deepcopy(inp["tools"]),
            chat_template=template,
            add_generation_prompt=inp["add_generation_prompt"],
            continue_final_message=inp["continue_final_message"],
            tokenize=False,
            **kwargs,
        )
        out = dict(c)
        out["expected"] = rendered
        return out
    except jinja2.exceptions.TemplateError as err:
        out = dict(c)
        # raise_exception messages are the template's own words and must match; other errors
        # (Python TypeErrors, undefined values) only need to be errors.
        out["expected_error_contains"] = str(err) if type(err) is jinja2.exceptions.TemplateError else ""
        out["python_error"] = f"{type(err).__name__}: {err}"
        return out
    except (TypeError, ValueError) as err:
        out = dict(c)
        out["expected_error_contains"] = ""
        out["python_error"] = f"{type(err).__name__}: {err}"
        return out


def encodings(tok, raw, extra_texts):
    result = []
    for text in ENCODE_TEXTS + extra_texts:
        for add_special_tokens in (False, True):
            ids = raw.encode(text, add_special_tokens=add_special_tokens).ids
            hf_ids = tok.encode(text, add_special_tokens=add_special_tokens)
            if hf_ids != ids:
                print(f"warning: transformers and tokenizers disagree on {text!r}", file=sys.stderr)
            result.append(
                {
                    "text": text,
                    "add_special_tokens": add_special_tokens,
                    "ids": ids,
                    "decoded": raw.decode(ids, skip_special_tokens=False),
                    "decoded_skip_special": raw.decode(ids, skip_special_tokens=True),
                }
            )
    return result


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {"transformers": transformers.__version__, "jinja2": jinja2.__version__, "tokenizers": tokenizers.__version__}
    models = {
        "qwen3": qwen3_cases(),
        "llama3_1": llama3_1_cases(),
        "gemma3": gemma3_cases(),
        "deepseek_v3": deepseek_v3_cases(),
    }
    for model, cases in models.items():
        folder = MODELS / model
        tok = AutoTokenizer.from_pretrained(str(folder))
        raw = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        rendered = [run_template(tok, None, c) for c in cases]
        prompts = [c["expected"] for c in rendered if c["name"] in ("system_user", "tools_with_system") and "expected" in c]
        golden = {
            "model": model,
            "generated_by": versions,
            "special_tokens": tok.special_tokens_map,
            "eos_token_id": tok.eos_token_id,
            "cases": rendered,
            "encodings": encodings(tok, raw, prompts),
        }
        path = OUT / f"{model}.json"
        path.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path} ({len(rendered)} cases)")

    # The feature templates render through the Llama 3.1 tokenizer (it has a bos_token).
    tok = AutoTokenizer.from_pretrained(str(MODELS / "llama3_1"))
    rendered = []
    for c in feature_cases():
        template = FEATURE_TEMPLATES[c.pop("template")]
        out = run_template(tok, template, c)
        out["template"] = template
        rendered.append(out)
    golden = {"generated_by": versions, "special_tokens": tok.special_tokens_map, "cases": rendered}
    path = OUT / "features.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(rendered)} cases)")


if __name__ == "__main__":
    main()
