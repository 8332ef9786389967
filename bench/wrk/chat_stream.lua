-- wrk load script: streamed chat completions with a unique prompt per request.
--
--   wrk -t2 -c256 -d10s -s bench/wrk/chat_stream.lua http://127.0.0.1:8000/v1/chat/completions [-- MODEL]
--
-- Model name: the first script argument, else $MODEL, else Qwen/Qwen3-0.6B.
-- Every user message (about 100 words, ~130 prompt tokens with the Qwen3 chat template) starts
-- with "<request counter>.<thread id> <run tag>", so no two prompts in a run or across runs are
-- equal and no whole-prompt or prefix cache can stand in for the work.
-- wrk runs one Lua state per thread: setup() (main state) hands each thread its id and the run tag.

local thread_count = 0
local run_tag = string.format("run%x", os.time())

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_id", thread_count)
   thread:set("run_tag", run_tag)
end

local model = os.getenv("MODEL") or "Qwen/Qwen3-0.6B"
local counter = 0
local head, tail

-- 96 common English words, one Qwen3 token each; with the prefix the message is ~111 tokens.
local words = {
   "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
   "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
   "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if",
   "more", "when", "will", "would", "who", "so", "no", "time", "people", "year", "way", "day",
   "man", "thing", "woman", "life", "child", "world", "school", "state", "family", "student",
   "group", "country", "problem", "hand", "part", "place", "case", "week", "company", "system",
   "program", "question", "work", "government", "number", "night", "point", "home", "water",
   "room", "mother", "area", "money", "story", "fact", "month", "lot", "right", "study", "book",
   "eye", "job", "word", "business",
}

function init(args)
   if args[1] ~= nil and args[1] ~= "" then
      model = args[1]
   end
   local text = table.concat(words, " ")
   -- The body is split around the counter once; request() only concatenates.
   head = '{"model":"' .. model .. '","messages":[{"role":"user","content":"'
   tail = " " .. (run_tag or "run") .. " " .. text
      .. '"}],"max_tokens":32,"ignore_eos":true,"stream":true}'
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "text/event-stream"
end

function request()
   counter = counter + 1
   local body = head .. counter .. "." .. (thread_id or 0) .. tail
   return wrk.format(nil, nil, nil, body)
end
