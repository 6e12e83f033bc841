-- bench/wrk.lua: the request mix of one bench/run phase, for wrk (Debian's, LuaJIT).
--
-- bench/run starts wrk with this script, BENCH_MODE in the environment and, after "--",
-- the phase's arguments. Modes:
--   get      GET the URL's path (static file, /cis/health, a CGI path): no Lua per request,
--            so the client costs the same as wrk without a script
--   token    POST /oidc/token grant_type=client_credentials, client_secret_basic;
--            args: BASIC (base64 of id:secret)
--   login    a direct-channel OTP login, over and over: POST /cis/v1/auth/otp/send
--            {"channel":"direct"} then POST /cis/v1/auth/otp/authenticate with the code it
--            answered; args: CLIENT_TOKEN TAG OUTDIR
--   refresh  POST /cis/v1/auth/token/refresh with the newest refresh token, over and over
--            (tokens rotate on every use), starting from the token in OUTDIR/TID.seed (which
--            bench/run makes with a login before wrk starts; without it the thread logs in
--            first); args: CLIENT_TOKEN TAG OUTDIR
--   mailsend an email-channel otp/send to a new address each time (see below)
--
-- login and refresh keep one state machine per wrk thread, so bench/run runs them with as
-- many threads as connections (-t N -c N): each thread then has one request in flight and
-- its responses come back in order. Each thread uses its own identifier
-- bench-TAG-THREAD@example.org (the client's open signup makes the user at its first login).
--
-- done() prints one line "BENCH_JSON {...}" with wrk's totals and latency percentiles. For
-- login and refresh each thread also writes one line per response, "KIND ok|STATUS MICROSECONDS"
-- (timed here from request() to response(), which is also what wrk times), in order, to
-- OUTDIR/TID.lat; bench/run reads those after wrk exits (exit() flushes them). They are files
-- because wrk 4.1's thread:get crashes now and then when it copies a table out of a thread.

local MODE = os.getenv("BENCH_MODE") or "get"

-- ---- main state: thread numbering and the summary ---------------------------------------

local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
end

local function json_value(v)
   if v == nil then
      return "null"
   elseif type(v) == "number" then
      if v ~= v or v == math.huge or v == -math.huge then return "null" end
      return string.format("%.3f", v)
   elseif type(v) == "string" then
      return string.format("%q", v)
   elseif type(v) == "table" then
      local parts = {}
      for k, x in pairs(v) do
         table.insert(parts, string.format("%q: %s", tostring(k), json_value(x)))
      end
      table.sort(parts)
      return "{" .. table.concat(parts, ", ") .. "}"
   end
   return "null"
end

function done(summary, latency, requests)
   local out = {
      requests = summary.requests,
      duration_s = summary.duration / 1e6,
      bytes = summary.bytes,
      errors = {
         connect = summary.errors.connect, read = summary.errors.read,
         write = summary.errors.write, status = summary.errors.status,
         timeout = summary.errors.timeout,
      },
      latency_ms = {
         mean = latency.mean / 1000, p50 = latency:percentile(50) / 1000,
         p90 = latency:percentile(90) / 1000, p99 = latency:percentile(99) / 1000,
         max = latency.max / 1000,
      },
   }
   io.write("BENCH_JSON " .. json_value(out) .. "\n")
end

-- ---- thread states ------------------------------------------------------------------------

if MODE == "token" then
   function init(args)
      wrk.method = "POST"
      wrk.path = "/oidc/token"
      wrk.body = "grant_type=client_credentials"
      wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
      wrk.headers["Authorization"] = "Basic " .. args[1]
   end
end

if MODE == "login" or MODE == "refresh" then
   local ffi = require("ffi")
   ffi.cdef [[
      struct bench_timespec { long tv_sec; long tv_nsec; };
      int clock_gettime(int clk, struct bench_timespec *tp);
   ]]
   local ts = ffi.new("struct bench_timespec")
   local function now_us()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
   end

   local headers, ident, out
   local state, code, rt, cur, t0 = "send", nil, nil, nil, 0

   function init(args)
      headers = {
         ["Authorization"] = "Bearer " .. args[1],
         ["Content-Type"] = "application/json",
      }
      ident = string.format("bench-%s-%d@example.org", args[2], tid)
      out = assert(io.open(string.format("%s/%d.lat", args[3], tid), "w"))
      out:setvbuf("full", 65536)
      local seed = io.open(string.format("%s/%d.seed", args[3], tid), "r")
      if seed then
         rt = seed:read("*l")
         seed:close()
         if MODE == "refresh" and rt and rt ~= "" then state = "refresh" end
      end
   end

   function request()
      local path, body
      if state == "send" then
         cur, path = "send", "/cis/v1/auth/otp/send"
         body = string.format(
            '{"channel":"direct","identifier_type":"email","identifier":"%s"}', ident)
      elseif state == "auth" then
         cur, path = "authenticate", "/cis/v1/auth/otp/authenticate"
         body = string.format(
            '{"passcode":"%s","identifier_type":"email","identifier":"%s"}', code, ident)
      else
         cur, path = "refresh", "/cis/v1/auth/token/refresh"
         body = string.format('{"refresh_token":"%s"}', rt)
      end
      t0 = now_us()
      return wrk.format("POST", path, headers, body)
   end

   -- "ok" answers are 200s that carry what the next step needs; anything else starts over
   function response(status, hdrs, body)
      local kind, ok = cur, false
      local us = now_us() - t0
      if status == 200 and kind == "send" then
         code = body:match('"code"%s*:%s*"(%d+)"')
         ok = code ~= nil
         state = ok and "auth" or "send"
      elseif status == 200 then
         rt = body:match('"refresh_token"%s*:%s*"([^"]+)"')
         ok = rt ~= nil
         state = (ok and MODE == "refresh") and "refresh" or "send"
      else
         state = "send"
      end
      out:write(kind, ok and " ok " or string.format(" %d ", status), string.format("%.0f\n", us))
   end
end

-- mailsend: POST /cis/v1/auth/otp/send {"channel":"email"} to a new address every time
-- (bench-TAG-THREAD-N@example.org: distinct recipients, as a real service sees them);
-- args: CLIENT_TOKEN TAG. wrk's own latency percentiles time it.
if MODE == "mailsend" then
   local headers, tag
   local n = 0

   function init(args)
      headers = {
         ["Authorization"] = "Bearer " .. args[1],
         ["Content-Type"] = "application/json",
      }
      tag = args[2]
   end

   function request()
      n = n + 1
      return wrk.format("POST", "/cis/v1/auth/otp/send", headers, string.format(
         '{"channel":"email","identifier_type":"email","identifier":"bench-%s-%d-%d@example.org"}',
         tag, tid, n))
   end
end
