"""The 大屏 pages: one HTML document each, CSS and script inline and allowed by hash (CSP), no request
to any other host. The server embeds the current state as JSON; the script renders it and every
state the SSE stream pushes. Sized for a 1920×1080 wall screen, readable across a room."""

from __future__ import annotations

from html import escape
from typing import Any

import orjson

from hall_controller.webpush import csp_hash

CSS = """
*{box-sizing:border-box}html,body{margin:0;background:#0b1526;color:#e8eef7;
font-family:"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif}
body{min-height:100vh;padding:20px 28px}a{color:inherit;text-decoration:none}
header{display:flex;align-items:baseline;gap:24px;border-bottom:2px solid #24406b;padding-bottom:10px}
h1{font-size:38px;margin:0;letter-spacing:2px}h2{font-size:26px;margin:14px 0 10px;color:#9fc2ff}
.clock{margin-left:auto;font-size:28px;color:#9fb3cf}.banner{background:#7a5a00;color:#fff;padding:8px 16px;
font-size:22px;border-radius:6px;margin-top:10px}.banner.red{background:#8c1d1d}
.totals{display:grid;grid-template-columns:repeat(6,1fr);gap:16px;margin:16px 0}
.total{background:#12223b;border-radius:10px;padding:12px 18px}.total .n{font-size:52px;font-weight:700}
.total .l{font-size:22px;color:#9fb3cf}.total .s{font-size:20px;color:#9fb3cf}
.main{display:grid;grid-template-columns:1fr 760px;gap:24px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px;align-content:start}
.tile{display:block;background:#12223b;border-radius:10px;padding:12px 16px;border-left:10px solid #2e8b57}
.tile.red{border-left-color:#e03131;background:#2a1518}.tile.amber{border-left-color:#f59f00}
.tile.grey{border-left-color:#5c6b80}.tile .name{font-size:26px;font-weight:700}
.tile .d{font-size:18px;color:#9fb3cf}.reasons{margin:6px 0;min-height:30px}
.chip{display:inline-block;font-size:19px;padding:2px 10px;border-radius:14px;margin:2px 6px 2px 0;background:#24406b}
.chip.red{background:#c92a2a}.chip.amber{background:#b07800}
.stats{font-size:20px;color:#cfe0f5}.stats b{font-size:24px;color:#fff}
table{width:100%;border-collapse:collapse;font-size:21px}th{color:#9fb3cf;text-align:left;font-weight:400}
td,th{padding:6px 8px;border-bottom:1px solid #24406b}.st-red{color:#ff6b6b;font-weight:700}
.st-amber{color:#ffc34d;font-weight:700}.st-ok{color:#8ce99a}.st-done{color:#9fb3cf}.st-none{color:#5c6b80}
tr.red td:first-child{border-left:6px solid #e03131}tr.amber td:first-child{border-left:6px solid #f59f00}
tr.ok td:first-child{border-left:6px solid #2e8b57}.empty{color:#9fb3cf;font-size:22px}
td[class^="st-"]{white-space:nowrap}.sub{font-size:22px;color:#9fb3cf}.nowrap{white-space:nowrap}.cols{display:grid;grid-template-columns:1fr 1fr;gap:24px}
"""

COMMON_JS = r"""
var D=document,$=function(i){return D.getElementById(i)},es=null,last=Date.now();
function el(tag,cls,text){var e=D.createElement(tag);if(cls)e.className=cls;if(text!==undefined&&text!==null)
 e.textContent=String(text);return e}
function min(s){return s===null||s===undefined?"—":Math.round(s/60)+" 分钟"}
function num(n){return n===null||n===undefined?"—":String(n)}
function head(v){$("now").textContent=v.now;var b=$("banner");var t=[];
 if(!v.broker)t.push("与市级消息服务器的连接中断，显示的是最后收到的状态");
 if(v.history==="down")t.push("历史数据暂不可用（数据库连接中断），实时状态照常更新");
 if(Date.now()-last>40000)t.push("页面与服务的连接中断，正在重连……");
 b.textContent=t.join("；");b.hidden=!t.length;b.className="banner"+(v.broker?"":" red")}
function ratingRows(tb,rows,withHall){tb.textContent="";rows.forEach(function(r){var tr=el("tr",r.status);
 if(withHall)tr.appendChild(el("td","",r.hall));tr.appendChild(el("td","",r.number+" · "+r.service));
 tr.appendChild(el("td","nowrap",r.raised));tr.appendChild(el("td","st-"+r.contact.state,r.contact.text));
 tr.appendChild(el("td","st-"+r.fix.state,r.fix.text));tb.appendChild(tr)})}
function connect(){if(es)es.close();es=new EventSource(BASE+"/events");
 es.addEventListener("state",function(e){last=Date.now();var v=JSON.parse(e.data);if(v)render(v)});
 es.onmessage=function(){last=Date.now()};es.onerror=function(){}}
setInterval(function(){if(Date.now()-last>40000){connect();last=Date.now()-20000}},5000);
"""

CITY_JS = r"""
var BASE="";
function tile(t){var a=el("a","tile "+t.level);a.href="/hall/"+t.district+"/"+t.hall;
 a.appendChild(el("div","name",t.name));a.appendChild(el("div","d","区 "+t.district+" · "+(t.online===false?"离线":
 t.open===false?"已闭厅":t.open?"办公中":"—")));var r=el("div","reasons");t.reasons.forEach(function(x,i){
 r.appendChild(el("span","chip "+(i===0&&t.level!=="ok"?t.level:""),x))});a.appendChild(r);
 var s=el("div","stats");s.appendChild(D.createTextNode("等候 "));s.appendChild(el("b","",num(t.waiting)));
 s.appendChild(D.createTextNode(" · 取号 "+num(t.issued)+" · 办结 "+num(t.served)));a.appendChild(s);
 a.appendChild(el("div","stats","窗口 "+(t.windows||"—")+" · 中位 "+min(t.median_s)+" · 最长 "+min(t.oldest_s)));
 return a}
function render(v){head(v);var T=v.totals;$("t-halls").textContent=T.online+"/"+T.halls;
 $("t-attn").textContent=T.attention?T.attention+" 个大厅需关注":"全部正常";
 $("t-waiting").textContent=T.waiting;$("t-issued").textContent=T.issued;$("t-served").textContent=T.served;
 $("t-left").textContent="离开 "+T.left;$("t-median").textContent=T.median_s===null?"—":Math.round(T.median_s/60);
 $("t-oldest").textContent="最长当前等候 "+min(T.oldest_s);$("t-bad").textContent=T.bad;
 $("t-badopen").textContent="待处理 "+T.bad_open+" · 超时 "+T.bad_overdue;
 var g=$("tiles");g.textContent="";v.tiles.forEach(function(t){g.appendChild(tile(t))});
 ratingRows($("ratings"),v.ratings,true);$("no-ratings").hidden=v.ratings.length>0}
render(JSON.parse($("data").textContent));connect();
"""

HALL_JS = r"""
var BASE=location.pathname.replace(/\/+$/,"");
function render(v){head(v);var t=v.tile;$("name").textContent=t.name;$("sub").textContent="区 "+t.district+
 " · 大厅 "+t.hall+" · "+(t.online===false?"离线":t.open===false?"已闭厅":t.open?"办公中":"—")+
 (v.at?" · 大厅时间 "+v.at:"");var r=$("reasons");r.textContent="";t.reasons.forEach(function(x,i){
 r.appendChild(el("span","chip "+(i===0&&t.level!=="ok"?t.level:""),x))});
 var sv=$("services");sv.textContent="";v.services.forEach(function(s){var tr=el("tr");
 tr.appendChild(el("td","",s.name||s.code));tr.appendChild(el("td","",s.waiting));
 tr.appendChild(el("td","",min(s.oldest_wait_s)));sv.appendChild(tr)});
 var c=v.counts,R=v.ratings_today;$("counts").textContent="今日取号 "+num(c.issued)+" · 办结 "+num(c.served)+
 " · 离开 "+num(c.left)+" · 过号 "+num(c.no_show)+" · 窗口 "+(t.windows||"—")+" · 中位等候 "+min(t.median_s)+
 " · P90 "+min(t.p90_s)+" · 评价 "+num(R.count)+"（差评 "+num(R.bad)+"）· 待上报 "+num(v.outbox.pending)+
 " · 上报失败 "+num(v.outbox.dead);
 var dv=$("devices");dv.textContent="";v.devices_offline.forEach(function(d){dv.appendChild(el("li","",
 d.id+"（"+d.kind+"）"))});$("no-devices").hidden=v.devices_offline.length>0;
 ratingRows($("ratings"),v.ratings,false);$("no-ratings").hidden=v.ratings.length>0;
 var NAMES={bad_rating:"差评",bad_rating_resolved:"差评已处理",device_offline:"设备离线",device_online:"设备恢复",
 dead_letter:"上报失败",overdue_visit:"超时办理"};var ra=$("recent");ra.textContent="";
 v.recent.forEach(function(a){ra.appendChild(el("li","",a.at+" "+(NAMES[a.type]||a.type)))})}
function history(){fetch(BASE+"/history",{cache:"no-store"}).then(function(r){return r.json()}).then(function(h){
 var tb=$("history");tb.textContent="";$("history-off").hidden=h.available;var rows=h.rows||[];
 $("no-history").hidden=!h.available||rows.length>0;rows.forEach(function(x){var tr=el("tr");
 [x.time,x.waiting,x.issued,x.served,min(x.median_s)].forEach(function(c){tr.appendChild(el("td","",c))});
 tb.appendChild(tr)});setTimeout(history,rows.length?60000:5000)}).catch(function(){$("history-off").hidden=false;
 setTimeout(history,15000)})}
render(JSON.parse($("data").textContent));connect();history();
"""

CITY_SCRIPT = COMMON_JS + CITY_JS
HALL_SCRIPT = COMMON_JS + HALL_JS
CSP = ("default-src 'none'; script-src " + " ".join(csp_hash(s) for s in (CITY_SCRIPT, HALL_SCRIPT))
       + f"; style-src {csp_hash(CSS)}; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def _data(v: Any) -> str:
    """The state for the script, inside <script type=application/json> (no `</` can close it early)."""
    return orjson.dumps(v).decode().replace("</", "<\\/")


def _head(title: str) -> str:
    return ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=1920"><meta name="referrer" content="no-referrer">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>")


def _header(title: str) -> str:
    return (f'<header><h1>{escape(title)}</h1><span class="clock" id="now"></span></header>'
            '<div class="banner" id="banner" role="status" hidden></div>')


def _total(ident: str, label: str, sub: str = "") -> str:
    extra = f'<div class="s" id="{sub}"></div>' if sub else ""
    return f'<div class="total"><div class="l">{label}</div><div class="n" id="{ident}">—</div>{extra}</div>'


def city_page(v: dict[str, Any]) -> str:
    title = v.get("title") or "全市公共法律服务大厅 实时监控"
    return (_head(title) + "<body>" + _header(title)
            + '<div class="totals">' + _total("t-halls", "大厅在线", "t-attn") + _total("t-waiting", "人流量（当前等候）")
            + _total("t-issued", "今日取号量") + _total("t-served", "今日办结", "t-left")
            + _total("t-median", "等候时长（中位，分钟）", "t-oldest") + _total("t-bad", "今日差评", "t-badopen")
            + '</div><div class="main"><section><h2>各大厅（需关注的在前）</h2><div class="tiles" id="tiles"></div>'
            '</section><section><h2>待处理差评（1 小时内联系，按期整改）</h2><table><thead><tr><th>大厅</th>'
            "<th>票号 · 业务</th><th>差评时间</th><th>联系</th><th>整改</th></tr></thead><tbody id=\"ratings\"></tbody>"
            '</table><p class="empty" id="no-ratings">目前没有待处理的差评</p></section></div>'
            f'<script type="application/json" id="data">{_data(v)}</script><script>{CITY_SCRIPT}</script></body></html>')


def hall_page(v: dict[str, Any]) -> str:
    title = v["tile"]["name"]
    return (_head(title) + '<body><header><h1><a href="/">‹ 全市</a> · <span id="name"></span></h1>'
            '<span class="sub" id="sub"></span><span class="clock" id="now"></span></header>'
            '<div class="banner" id="banner" role="status" hidden></div><div class="reasons" id="reasons"></div>'
            '<p class="stats" id="counts"></p><div class="cols"><section><h2>各业务等候</h2><table><thead><tr>'
            '<th>业务</th><th>等候人数</th><th>最长等候</th></tr></thead><tbody id="services"></tbody></table>'
            '<h2>待处理差评</h2><table><thead><tr><th>票号 · 业务</th><th>差评时间</th><th>联系</th><th>整改</th>'
            '</tr></thead><tbody id="ratings"></tbody></table><p class="empty" id="no-ratings">没有待处理的差评</p>'
            '<h2>离线设备</h2><ul class="stats" id="devices"></ul><p class="empty" id="no-devices">设备全部在线</p>'
            '</section><section><h2>近 2 小时（每 5 分钟）</h2><p class="banner" id="history-off" hidden>'
            '历史数据暂不可用（数据库连接中断），实时状态照常更新</p><table><thead><tr><th>时间</th><th>等候</th>'
            '<th>取号</th><th>办结</th><th>中位等候</th></tr></thead><tbody id="history"></tbody></table>'
            '<p class="empty" id="no-history" hidden>尚无记录（每 5 分钟记一次）</p>'
            '<h2>最近告警</h2><ul class="stats" id="recent"></ul></section></div>'
            f'<script type="application/json" id="data">{_data(v)}</script><script>{HALL_SCRIPT}</script></body></html>')


def message_page(title: str, text: str, status_text: str = "") -> str:
    return (_head(title) + f'<body><header><h1><a href="/">‹ 全市</a> · {escape(title)}</h1></header>'
            f'<p class="empty">{escape(text)}</p></body></html>')
