-- bench/scale.lua: bench/scale's requests, for wrk. Every request is for a user or a session
-- picked at random among all of the database's, so that a big database is read where a
-- request would read it, not in the few pages a handful of fixed users keep in the cache.
--
-- BENCH_MODE in the environment; after "--": CLIENT_TOKEN TAG USERS OUTDIR [TOKENS_FILE PICK]
--   send     POST /cis/v1/auth/otp/send {"channel":"direct"} for a random user of the
--            database (imported as TAG-N@example.org, N < USERS), over and over
--   login    that send, then POST /cis/v1/auth/otp/authenticate with the code it answered
--   refresh  POST /cis/v1/auth/token/refresh with the refresh tokens of TOKENS_FILE (one a
--            line, sessions spread over the whole database): thread T of N takes lines T,
--            T+N, ...; with PICK "each" a request takes the thread's next line (each token is
--            used once) and goes on with the newest successor when it has used them all; with
--            PICK "chain" the thread takes one line and then refreshes its successors (a
--            small database: its pages are all in the cache whichever session is refreshed)
-- Each thread keeps one request in flight (bench/scale runs -t N -c N) and writes one line
-- per response, "KIND ok|STATUS MICROSECONDS", to OUTDIR/TID.lat.

local MODE = os.getenv("BENCH_MODE") or "send"
local nthreads = 0
local threads = {}

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
   table.insert(threads, thread)
end

local ffi = require("ffi")
ffi.cdef [[
   struct scale_timespec { long tv_sec; long tv_nsec; };
   int clock_gettime(int clk, struct scale_timespec *tp);
]]
local ts = ffi.new("struct scale_timespec")
local function now_us()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local headers, tag, users, out
local state, code, ident, cur, t0 = "send", nil, nil, nil, 0
local mine, next_tok, rt, chain = {}, 1, nil, false

function init(args)
   headers = {
      ["Authorization"] = "Bearer " .. args[1],
      ["Content-Type"] = "application/json",
   }
   tag, users = args[2], tonumber(args[3])
   out = assert(io.open(string.format("%s/%d.lat", args[4], tid), "w"))
   out:setvbuf("full", 65536)
   -- Different threads, different users; the same sequence from run to run is not needed.
   math.randomseed(tid * 7919 + math.floor(now_us()) % 1000003)
   if MODE == "refresh" then
      local n = 0
      for line in io.lines(args[5]) do
         n = n + 1
         -- wrk hands every thread the same args; the thread count is in the environment
         if (n - 1) % tonumber(os.getenv("BENCH_THREADS")) == tid - 1 then
            table.insert(mine, line)
         end
      end
      state = "refresh"
      chain = args[6] == "chain"
   end
end

function request()
   local path, body
   if state == "send" then
      ident = string.format("%s-%d@example.org", tag, math.random(0, users - 1))
      cur, path = "send", "/cis/v1/auth/otp/send"
      body = string.format('{"channel":"direct","identifier_type":"email","identifier":"%s"}',
                           ident)
   elseif state == "auth" then
      cur, path = "authenticate", "/cis/v1/auth/otp/authenticate"
      body = string.format('{"passcode":"%s","identifier_type":"email","identifier":"%s"}',
                           code, ident)
   else
      if next_tok <= #mine and (rt == nil or not chain) then
         rt = mine[next_tok]
         next_tok = next_tok + 1
      end
      cur, path = "refresh", "/cis/v1/auth/token/refresh"
      body = string.format('{"refresh_token":"%s"}', rt or "none-left")
   end
   t0 = now_us()
   return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
   local kind, ok = cur, false
   local us = now_us() - t0
   if status == 200 and kind == "send" then
      code = body:match('"code"%s*:%s*"(%d+)"')
      ok = code ~= nil
      state = (ok and MODE == "login") and "auth" or "send"
   elseif status == 200 and kind == "authenticate" then
      ok = body:match('"refresh_token"') ~= nil
      state = "send"
   elseif status == 200 then
      local succ = body:match('"refresh_token"%s*:%s*"([^"]+)"')
      ok = succ ~= nil
      if ok then rt = succ end
   elseif MODE ~= "refresh" then
      state = "send"
   end
   out:write(kind, ok and " ok " or string.format(" %d ", status), string.format("%.0f\n", us))
end

function done(summary, latency, requests)
   io.write(string.format("BENCH_DONE %d %.3f\n", summary.requests, summary.duration / 1e6))
end
