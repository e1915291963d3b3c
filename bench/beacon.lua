-- wrk script for bench/beacon_bench.py: POSTs fieldlab page-view beacons the way fieldlab.js's
-- sendBeacon does (text/plain, Origin, Referer, a real Chrome User-Agent), each with a UNIQUE
-- page-view id "<tag>-<thread>-<n>", so the database can be checked afterwards:
-- every 2xx must have left exactly one page view behind.
--
-- usage: wrk -t1 -c64 -d15s --latency -s bench/beacon.lua http://127.0.0.1:P -- SITE_KEY TAG
-- done() prints one line "BENCH_JSON {...}" with latency percentiles (microseconds), the
-- status counts per code and the number of requests the threads generated.
--
-- The response() hook (per-status counts) makes wrk parse every response into Lua and costs
-- some client throughput; the benchmark runs the same script against both servers.

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state). Globals so done() can read them.
statuses = {}
sent = 0
first_error = "" -- body of the first non-2xx answer, to say why in the report

local path
local tag
local urls = {
   "https://shop.example/",
   "https://shop.example/product/48213",
   "https://shop.example/product/1187?utm_source=newsletter&utm_medium=email",
   "https://shop.example/product/90322?color=blue&size=m",
   "https://shop.example/category/shoes",
   "https://shop.example/category/shoes?page=2&sort=price",
   "https://shop.example/search?q=running+shoes",
   "https://shop.example/cart",
   "https://shop.example/checkout/shipping",
   "https://shop.example/checkout/payment#card",
   "https://shop.example/account/orders/5f0c2a9e-1b7d-4c11-9a0e-0d6c3b1e2f44",
   "https://shop.example/blog/spring-collection-2025",
}
local user_agents = {
   -- Chrome 126 desktop (Windows) and Chrome 126 on Android.
   "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
   "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
}
local viewports = { { 1920, 1080, 1 }, { 1366, 768, 1 }, { 412, 915, 2.625 }, { 390, 844, 3 } }
local lcp_elements = { "#hero>img", "main>section.hero>picture>img", "h1.product-title", "div.banner>img" }
local inp_targets = { "button.add-to-cart", "a.nav-link", "input#search", "button.size-option" }
local ects = { "4g", "4g", "4g", "3g" }
local headers = {} -- headers[url_index][ua_index], built once in init()

local body_fmt = '{"v":1,"id":"%s-%d-%d","url":"%s","nav":"%s","ts":%d,'
   .. '"metrics":{"LCP":%.1f,"FCP":%.1f,"TTFB":%.1f,"INP":%d,"CLS":%.4f},'
   .. '"attribution":{"LCP":{"element":"%s","url":"https://cdn.shop.example/img/hero-%d.avif",'
   .. '"ttfb":%.1f,"loadDelay":%.1f,"loadDuration":%.1f,"renderDelay":%.1f},'
   .. '"INP":{"target":"%s","type":"pointer","time":%d,"inputDelay":%.1f,"processing":%.1f,'
   .. '"presentation":%.1f,"loaf":[{"src":"https://shop.example/static/js/app.4f2a9c.js","dur":%d}]},'
   .. '"CLS":{"target":"div.promo-banner","time":%d,"value":%.4f}},'
   .. '"context":{"vw":%d,"vh":%d,"dm":8,"ect":"%s","dpr":%s}%s}'
local error_fmt = ',"errors":[{"msg":"TypeError: Cannot read properties of undefined (reading \'price\')",'
   .. '"src":"https://shop.example/static/js/app.4f2a9c.js","line":1,"col":%d,'
   .. '"stack":"TypeError: Cannot read properties of undefined\\n    at renderPrice (app.4f2a9c.js:1:%d)","ts":%d}]'

function init(args)
   path = "/api/v1/beacon?site=" .. args[1]
   tag = args[2] or "bench"
   for u, url in ipairs(urls) do
      headers[u] = {}
      for a, ua in ipairs(user_agents) do
         headers[u][a] = {
            ["Content-Type"] = "text/plain;charset=UTF-8",
            ["Origin"] = "https://shop.example",
            ["Referer"] = url,
            ["User-Agent"] = ua,
         }
      end
   end
   math.randomseed(tid * 7919 + os.time())
end

function request()
   sent = sent + 1
   local u = math.random(#urls)
   local a = math.random(#user_agents)
   local vp = viewports[math.random(#viewports)]
   local ttfb = 40 + math.random() * 400
   local fcp = ttfb + 150 + math.random() * 1200
   local lcp = fcp + math.random() * 2500
   local inp = 16 + math.random(400)
   local cls = math.random() * 0.3
   local errors = ""
   if sent % 20 == 0 then -- one page view in twenty reports a JS error
      local col = math.random(90000)
      errors = string.format(error_fmt, col, col, math.random(5000))
   end
   local body = string.format(body_fmt, tag, tid, sent, urls[u], (sent % 10 == 0) and "reload" or "navigate",
      os.time() * 1000 - math.random(60000), lcp, fcp, ttfb, inp, cls,
      lcp_elements[math.random(#lcp_elements)], math.random(40), ttfb, math.random() * 300,
      math.random() * 600, math.random() * 200,
      inp_targets[math.random(#inp_targets)], math.random(20000), math.random() * 50, inp * 0.6,
      inp * 0.3, math.random(300), math.random(8000), cls,
      vp[1], vp[2], ects[math.random(#ects)], tostring(vp[3]), errors)
   return wrk.format("POST", path, headers[u][a], body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status >= 300 and first_error == "" then
      first_error = string.format("%d %s", status, string.sub(body or "", 1, 300))
   end
end

local function json_string(s)
   s = s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local counts = {}
   local generated = 0
   local err = ""
   for _, thread in ipairs(threads) do
      generated = generated + (thread:get("sent") or 0)
      if err == "" then err = thread:get("first_error") or "" end
      for code, n in pairs(thread:get("statuses") or {}) do
         counts[code] = (counts[code] or 0) + n
      end
   end
   local status_parts = {}
   for code, n in pairs(counts) do
      table.insert(status_parts, string.format('"%d":%d', code, n))
   end
   local pct = {}
   for _, p in ipairs({ 50, 90, 99, 99.9 }) do
      table.insert(pct, string.format('"%s":%d', tostring(p), latency:percentile(p)))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"generated":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"mean":%.1f,"max":%d,"stdev":%.1f,"p":{%s}},"statuses":{%s},"first_error":%s}\n',
      summary.duration, summary.requests, summary.bytes, generated,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency.stdev, table.concat(pct, ","), table.concat(status_parts, ","),
      json_string(err)))
end
