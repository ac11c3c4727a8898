"""The pages as sent: HTML with the CSS and the script inline (no file, no CDN, no web font: one
request per page, nothing from any other host), rendered with the state already in place so a page
reads right before (or without) its script runs.

The script only connects and puts the pushed texts in place (view.py wrote them). The Content
Security Policy names the inline script and style by hash, so nothing else can run or load.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

import orjson

from hall_controller.webpush import csp_hash

from . import view

# ------------------------------------------------------------------ colours (contrast tested, ≥ 4.5:1)


@dataclass(frozen=True)
class Palette:
    text: str = "#1b1b1b"
    muted: str = "#4a4a4a"
    page: str = "#f3f5f8"
    card: str = "#ffffff"
    primary: str = "#0b57d0"
    on_primary: str = "#ffffff"
    number: str = "#0b3d91"
    called: str = "#0a6b32"
    on_called: str = "#ffffff"
    danger: str = "#b3261e"
    on_danger: str = "#ffffff"
    banner: str = "#ffe08a"
    on_banner: str = "#1b1b1b"
    chip: str = "#e8eef9"


PALETTE = Palette()

# (foreground, background) pairs the CSS uses for text; tests/test_web_pages.py checks each.
CONTRAST_PAIRS = (("text", "page"), ("text", "card"), ("muted", "card"), ("muted", "page"), ("number", "card"),
                  ("on_primary", "primary"), ("on_called", "called"), ("on_danger", "danger"),
                  ("on_banner", "banner"), ("text", "chip"), ("primary", "card"), ("called", "card"),
                  ("danger", "card"))

_P = PALETTE
CSS = f"""
*{{box-sizing:border-box}}
html{{-webkit-text-size-adjust:100%;text-size-adjust:100%}}
body{{margin:0;font-family:system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
font-size:1rem;line-height:1.5;color:{_P.text};background:{_P.page};overflow-wrap:anywhere}}
main{{max-width:40rem;margin:0 auto;padding:min(0.75rem,2.5vw)}}
header{{background:{_P.primary};color:{_P.on_primary};padding:0.75rem min(1rem,4vw)}}
header p{{margin:0;font-weight:700;font-size:1.1rem}}
h1,h2{{margin:0}}
h2{{font-size:1.1rem;margin-bottom:0.5rem}}
.card{{background:{_P.card};border-radius:0.75rem;padding:min(1rem,4vw);margin:0 0 0.75rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}}
.label,.muted{{color:{_P.muted};margin:0}}
#number{{font-size:min(3.5rem,21vw);line-height:1.1;color:{_P.number};font-variant-numeric:tabular-nums;
letter-spacing:0.05em;white-space:nowrap;overflow-wrap:normal}}
#service{{margin:0.25rem 0 0.5rem;font-size:1.2rem}}
.status{{font-size:1.6rem;font-weight:700;margin:0.25rem 0}}
.st-called .status,.st-serving .status{{color:{_P.called}}}
.st-no_show .status,.st-left .status,.st-cancelled .status{{color:{_P.danger}}}
p{{margin:0.25rem 0}}
ul{{margin:0;padding-left:1.25rem}}
button{{font:inherit;font-size:1.1rem;min-height:2.75rem;padding:0.5rem 1rem;border-radius:0.5rem;
border:2px solid {_P.primary};background:{_P.card};color:{_P.primary};cursor:pointer;max-width:100%}}
button.primary{{background:{_P.primary};color:{_P.on_primary}}}
button.danger{{background:{_P.danger};border-color:{_P.danger};color:{_P.on_danger}}}
button:focus-visible,input:focus-visible+span{{outline:3px solid {_P.text};outline-offset:2px}}
#offline{{background:{_P.banner};color:{_P.on_banner};padding:0.75rem 1rem;font-weight:700;position:sticky;top:0;z-index:5}}
#msg{{color:{_P.danger};font-weight:700}}
fieldset{{border:0;padding:0;margin:0 0 0.75rem}}
legend{{font-weight:700;margin-bottom:0.25rem}}
.choices{{display:grid;grid-template-columns:repeat(auto-fill,minmax(6.5rem,1fr));gap:0.4rem}}
.choices label{{position:relative}}
.choices input{{position:absolute;opacity:0;width:1px;height:1px}}
.choices span{{display:block;text-align:center;padding:0.4rem 0.5rem;min-height:2.75rem;line-height:1.9rem;border-radius:0.5rem;
background:{_P.chip};color:{_P.text};border:2px solid {_P.chip}}}
.choices input:checked+span{{background:{_P.primary};color:{_P.on_primary};border-color:{_P.primary}}}
.card button+p{{margin-top:0.5rem}}
.row{{display:flex;flex-wrap:wrap;gap:0.5rem;margin-top:0.75rem}}
#called{{position:fixed;inset:0;z-index:10;background:{_P.called};color:{_P.on_called};display:flex;
flex-direction:column;justify-content:center;align-items:center;text-align:center;padding:1rem;overflow:auto}}
#called[hidden],[hidden]{{display:none!important}}
#called-text{{font-size:3rem;font-weight:700;line-height:1.2}}
#called-number{{font-size:min(2.5rem,18vw);font-weight:700;white-space:nowrap}}
#called button{{margin-top:1.5rem;font-size:1.4rem;padding:0.6rem 2.5rem;background:{_P.card};color:{_P.called};border-color:{_P.card}}}
dialog{{border:0;border-radius:0.75rem;padding:1rem;max-width:calc(100% - 2rem);color:{_P.text};background:{_P.card}}}
dialog::backdrop{{background:rgba(0,0,0,.5)}}
#services{{list-style:none;padding:0}}
.svc{{display:grid;grid-template-columns:1fr auto;gap:0 1rem;align-items:baseline;padding:0.5rem 0;
border-bottom:1px solid {_P.chip}}}
.svc strong{{font-size:1.15rem}}
.svc .muted{{grid-column:1/-1}}
.big{{font-size:1.3rem;font-weight:700}}
"""

# The connection every page keeps: EventSource, its watchdog, polling when SSE keeps failing, and a
# state fetch when the phone wakes. `render(view)` is the page's own.
CONNECT_JS = r"""
var D=document,$=function(i){return D.getElementById(i)};
var es=null,errors=0,pollTimer=null,lastMsg=Date.now(),sseTried=0;
function offline(on){$("offline").hidden=!on}
function seen(){lastMsg=Date.now()}
function poll(){fetch(BASE+"/state",{cache:"no-store",credentials:"same-origin"}).then(function(r){
 if(r.status===404){location.reload();return null}
 if(!r.ok)throw new Error(r.status);return r.json()}).then(function(v){if(v){seen();render(v);
 if(!es&&Date.now()-sseTried>30000)connect()}}).catch(function(){offline(true)})}
function startPolling(){if(!pollTimer){pollTimer=setInterval(poll,5000);setTimeout(poll,500)}}
function stopPolling(){if(pollTimer){clearInterval(pollTimer);pollTimer=null}}
function connect(){if(!window.EventSource){startPolling();return}
 sseTried=Date.now();if(es)es.close();es=new EventSource(BASE+"/events");
 es.addEventListener("state",function(e){errors=0;seen();stopPolling();render(JSON.parse(e.data))});
 es.addEventListener("ping",function(e){errors=0;seen();var p=JSON.parse(e.data);offline(!p.online);
  if(p.updated)$("updated").textContent=p.updated});
 es.onerror=function(){offline(true);errors++;startPolling();if(es.readyState===2||errors>=3){es.close();es=null}}}
setInterval(function(){if(Date.now()-lastMsg>40000){offline(true);if(es){es.close();es=null}
 if(pollTimer)poll();else connect();seen()}},5000);
D.addEventListener("visibilitychange",function(){if(!D.hidden&&Date.now()-lastMsg>20000){poll();connect()}});
window.addEventListener("online",function(){poll();connect()});
function fill(v){var t=v.text||{};for(var k in t){var el=$(k);if(el){el.textContent=t[k];el.hidden=!t[k]}}
 var ul=$("recent");if(ul){ul.textContent="";(v.recent||[]).forEach(function(s){var li=D.createElement("li");
  li.textContent=s;ul.appendChild(li)})}offline(!v.online)}
"""

TICKET_JS = r"""
var BASE=location.pathname.replace(/\/+$/,"");
var shown=null,armed=false,ctx=null;
function tone(freqs){if(!ctx)return;var t=ctx.currentTime;freqs.forEach(function(f,i){var o=ctx.createOscillator(),
 g=ctx.createGain();o.type="sine";o.frequency.value=f;g.gain.setValueAtTime(0.0001,t+i*0.3);
 g.gain.exponentialRampToValueAtTime(0.5,t+i*0.3+0.02);g.gain.exponentialRampToValueAtTime(0.0001,t+i*0.3+0.28);
 o.connect(g);g.connect(ctx.destination);o.start(t+i*0.3);o.stop(t+i*0.3+0.3)})}
function render(v){if(v.expired){if(es)es.close();stopPolling();location.reload();return}
 fill(v);var s=v.show||{};["leave","rate","recent","alert"].forEach(function(k){$(k+"-box").hidden=!s[k]});
 D.body.className="st-"+v.status;var c=v.called;
 if(c){$("called-text").textContent=c.text;$("called-number").textContent=v.text.number;
  if(c.key!==shown){shown=c.key;$("called").hidden=false;$("called-ok").focus();
   if(navigator.vibrate)navigator.vibrate([400,200,400,200,800]);if(armed)tone([880,660,880,660])}}
 else{$("called").hidden=true}}
$("arm").addEventListener("click",function(){try{var A=window.AudioContext||window.webkitAudioContext;
 ctx=ctx||new A();ctx.resume();armed=true;tone([660]);this.textContent="提醒音已开启";this.setAttribute("aria-pressed","true")}
 catch(e){this.textContent="本机不支持提醒音"}});
$("called-ok").addEventListener("click",function(){$("called").hidden=true});
function msg(t){$("msg").textContent=t||""}
function post(path,body){msg("");return fetch(BASE+path,{method:"POST",credentials:"same-origin",
 headers:{"Content-Type":"application/json"},body:JSON.stringify(body)}).then(function(r){
 if(r.status===404){location.reload();return null}return r.json()}).then(function(j){if(!j)return;
 if(j.view)render(j.view);msg(j.ok?"":j.message)}).catch(function(){msg("提交未成功，请检查网络后再试")})}
$("leave").addEventListener("click",function(){var d=$("confirm");if(d.showModal)d.showModal();
 else if(window.confirm("确定不排了吗？离开后本号作废。"))post("/leave",{})});
$("confirm-no").addEventListener("click",function(){$("confirm").close()});
$("confirm-yes").addEventListener("click",function(){$("confirm").close();post("/leave",{})});
$("rate-form").addEventListener("submit",function(e){e.preventDefault();var f=this,dims={},s=f.querySelector(
 "input[name=score]:checked");if(!s){msg("请先选择总体评价");return}
 f.querySelectorAll("input[data-dim]:checked").forEach(function(i){dims[i.getAttribute("data-dim")]=+i.value});
 post("/rate",{score:+s.value,dimensions:dims})});
render(JSON.parse($("data").textContent));connect();
"""

HALL_JS = r"""
var BASE="";
function render(v){fill(v);var ul=$("services");ul.textContent="";(v.services||[]).forEach(function(s){
 var li=D.createElement("li");li.className="svc";var a=D.createElement("strong");a.textContent=s.name+"（"+s.prefix+"）";
 var b=D.createElement("span");b.className="big";b.textContent=s.waiting;var c=D.createElement("span");
 c.className="muted";c.textContent=s.note;c.hidden=!s.note;li.appendChild(a);li.appendChild(b);li.appendChild(c);
 ul.appendChild(li)})}
render(JSON.parse($("data").textContent));connect();
"""


TICKET_SCRIPT = CONNECT_JS + TICKET_JS
HALL_SCRIPT = CONNECT_JS + HALL_JS
CSP = ("default-src 'none'; script-src " + " ".join(csp_hash(s) for s in (TICKET_SCRIPT, HALL_SCRIPT))
       + f"; style-src {csp_hash(CSS)}; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def _data(v: dict[str, Any]) -> str:
    """The state for the script, inside <script type=application/json> (no `</` can close it early)."""
    return orjson.dumps(v).decode().replace("</", "<\\/")


def _text(tag: str, ident: str, text: str, cls: str = "", extra: str = "") -> str:
    attrs = f' id="{ident}"' + (f' class="{cls}"' if cls else "") + (f" {extra}" if extra else "")
    return f"<{tag}{attrs}{'' if text else ' hidden'}>{escape(text)}</{tag}>"


def _hidden(flag: bool) -> str:
    return "" if flag else " hidden"


def _head(title: str) -> str:
    return ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head>")


def _choices(name: str, dim: str | None = None) -> str:
    data = f' data-dim="{escape(dim)}"' if dim else ""
    required = "" if dim else " required"
    return "".join(f'<label><input type="radio" name="{escape(name)}" value="{score}"{data}{required}>'
                   f"<span>{level}</span></label>" for score, level in view.SCORES)


def _rate_form(show: bool) -> str:
    dims = "".join(f'<fieldset><legend>{d}</legend><div class="choices">{_choices("d" + str(i), d)}</div></fieldset>'
                   for i, d in enumerate(view.DIMENSIONS))
    return (f'<section id="rate-box" class="card" aria-labelledby="rate-h"{_hidden(show)}>'
            '<h2 id="rate-h">请为本次服务评价</h2><form id="rate-form">'
            f'<fieldset><legend>总体评价（必选）</legend><div class="choices">{_choices("score")}</div></fieldset>'
            f'<p class="muted">分项评价（可选）</p>{dims}'
            '<button type="submit" class="primary">提交评价</button></form></section>')


def ticket_page(v: dict[str, Any]) -> str:
    """The page of one ticket in the state `v` (view.ticket_view)."""
    t, show = v["text"], v["show"]
    called = v.get("called") or {}
    recent = "".join(f"<li>{escape(line)}</li>" for line in v["recent"])
    return (
        _head(f"排队进度 {t['number']}")
        + f'<body class="st-{escape(v["status"])}">'
        + f'<div id="offline" role="status"{_hidden(not v["online"])}>{view.OFFLINE_TEXT}</div>'
        + f'<header>{_text("p", "hall", t["hall"])}</header><main>'
        + '<section class="card" aria-labelledby="number"><p class="label">您的号码</p>'
        + _text("h1", "number", t["number"]) + _text("p", "service", t["service"])
        + _text("p", "status", t["status"], "status", 'role="status" aria-live="polite"')
        + _text("p", "detail", t["detail"], "big") + _text("p", "estimate", t["estimate"])
        + _text("p", "windows", t["windows"], "muted") + _text("p", "rated", t["rated"], "big")
        + "</section>" + _rate_form(show.get("rate", False))
        + f'<section id="alert-box" class="card"{_hidden(show.get("alert", False))}>'
        + '<button id="arm" type="button" aria-pressed="false">提醒音：点此开启</button>'
        + '<p class="muted">叫到您的号时，本页会全屏提示并振动；开启提醒音后还会响铃。请保持本页打开。</p></section>'
        + f'<section id="recent-box" class="card" aria-labelledby="recent-h"{_hidden(show.get("recent", False))}>'
        + f'<h2 id="recent-h">本业务最近叫号</h2><ul id="recent">{recent}</ul></section>'
        + f'<section id="leave-box" class="card"{_hidden(show.get("leave", False))}>'
        + '<button id="leave" type="button" class="danger">我不排了</button>'
        + '<p class="muted">不再等候时请点此离开队伍，把位置让给后面的人。</p></section>'
        + '<p id="msg" role="alert"></p>' + _text("p", "updated", t["updated"], "muted")
        + "</main>"
        + f'<div id="called" role="alertdialog" aria-modal="true" aria-labelledby="called-text"{_hidden(False)}>'
        + f'<p class="big">轮到您了</p><p id="called-number">{escape(t["number"])}</p>'
        + f'<p id="called-text">{escape(called.get("text", ""))}</p>'
        + '<button id="called-ok" type="button">知道了</button></div>'
        + '<dialog id="confirm" aria-labelledby="confirm-h"><h2 id="confirm-h">确定不排了吗？</h2>'
        + "<p>离开后本号作废，如需办理要重新取号。</p><div class=\"row\">"
        + '<button id="confirm-no" type="button" class="primary">继续排队</button>'
        + '<button id="confirm-yes" type="button" class="danger">确定离开</button></div></dialog>'
        + f'<script id="data" type="application/json">{_data(v)}</script>'
        + f"<script>{TICKET_SCRIPT}</script></body></html>")


def hall_page(v: dict[str, Any]) -> str:
    """The hall page in the state `v` (view.hall_view)."""
    t = v["text"]
    services = "".join(
        f'<li class="svc"><strong>{escape(s["name"])}（{escape(s["prefix"])}）</strong>'
        f'<span class="big">{escape(s["waiting"])}</span>'
        f'<span class="muted"{_hidden(bool(s["note"]))}>{escape(s["note"])}</span></li>' for s in v["services"])
    recent = "".join(f"<li>{escape(line)}</li>" for line in v["recent"])
    return (
        _head(f"{t['hall'] or '大厅'} · 排队情况")
        + "<body>"
        + f'<div id="offline" role="status"{_hidden(not v["online"])}>{view.OFFLINE_TEXT}</div>'
        + f'<header>{_text("p", "hall", t["hall"] or "大厅排队情况")}</header><main>'
        + f'<section class="card">{_text("p", "hours", t["hours"], "big")}{_text("p", "closed", t["closed"], "status")}'
        + '<p class="muted">请以大厅叫号为准；扫取号小票上的二维码可查看自己的排队进度。</p></section>'
        + '<section class="card" aria-labelledby="svc-h"><h2 id="svc-h">各业务排队</h2>'
        + f'<ul id="services">{services}</ul></section>'
        + '<section class="card" aria-labelledby="recent-h"><h2 id="recent-h">最近叫号</h2>'
        + f'<ul id="recent">{recent}</ul></section>'
        + _text("p", "updated", t["updated"], "muted") + "</main>"
        + f'<script id="data" type="application/json">{_data(v)}</script>'
        + f"<script>{HALL_SCRIPT}</script></body></html>")


def message_page(title: str, text: str, *, refresh: int | None = None) -> str:
    """A page of two lines and a way on: the expired/unknown token, too many lookups, the hall offline."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (_head(title).replace("</head>", meta + "</head>")
            + f'<body><main><section class="card"><h1 class="status">{escape(title)}</h1>'
            + f'<p class="big">{escape(text)}</p><p><a href="/">查看大厅排队情况</a></p></section></main></body></html>')


EXPIRED_PAGE = message_page(view.EXPIRED_TITLE, view.EXPIRED_TEXT)
TOO_MANY_PAGE = message_page(view.TOO_MANY_TITLE, view.TOO_MANY_TEXT)
UNAVAILABLE_PAGE = message_page(view.UNAVAILABLE_TITLE, view.UNAVAILABLE_TEXT, refresh=10)
