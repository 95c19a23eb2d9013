// An HTTP/2 client driven by commands, for the t/70-hostile-*.t tests.
//
//   node hostile-h2.mjs
//
// One JSON command per line on stdin; each is answered by exactly one JSON
// line on stdout, in order (commands run one after the other).  Byte
// strings (bodies, stream data) travel base64-encoded ("*_b64").
//
//   {"op":"connect","session":"a","port":N,"tls":false,"settings":{...}}
//       opens an h2c (or, with tls, h2 over TLS) session
//   {"op":"request","session":"a","method":"POST","path":"/p","headers":{},
//    "body_b64":"...","timeout":5000}
//       one request, read to its end: {status, headers, body_b64, rst, error}
//   {"op":"open","session":"a","sid":"s1","path":"/events/x","headers":{},
//    "paused":false,"timeout":5000}
//       a stream left open; answers when its response headers are in
//   {"op":"open_many","session":"a","prefix":"r","n":100,"path":"/events/x"}
//       n streams sid <prefix>0..n-1; answers {statuses:[...]}
//   {"op":"read","sid":"s1","until_b64":"...","timeout":3000}
//       the bytes received on the stream since the last read, after waiting
//       until they hold until_b64 (or the time runs out): {data_b64, ended,
//       closed, rst}
//   {"op":"reset","sid":"s1","code":8}        RST_STREAM on one stream
//   {"op":"reset_prefix","prefix":"r","code":8}  ... on all streams <prefix>*
//   {"op":"partial","session":"a","path":"/p","headers":{},"total":N,
//    "send":N,"wait":3000}
//       a request body of `total` bytes of which only the first `send` are
//       sent; then it waits up to `wait` ms for an answer before it sends
//       the rest: {status, body_b64, sent_before_answer, answered_early}
//   {"op":"raw_zero_window_update","port":N,"path":"/events/x","timeout":3000}
//       raw frames over TCP: preface, SETTINGS, a GET on stream 1, then a
//       WINDOW_UPDATE of increment 0 on stream 1 (a protocol error);
//       answers the frames the server sent back: [{type, stream, code}]
//   {"op":"close","session":"a"}   {"op":"exit"}

import http2 from 'node:http2';
import net from 'node:net';
import readline from 'node:readline';

const sessions = new Map();
const streams = new Map();

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => Buffer.from(s || '', 'base64');

function plainHeaders(h) {
    const o = {};
    for (const [k, v] of Object.entries(h || {})) {
        o[k] = Array.isArray(v) ? v.join(', ') : String(v);
    }
    return o;
}

// header values as strings (a list stays a list: several fields)
function strHeaders(h) {
    const o = {};
    for (const [k, v] of Object.entries(h || {})) {
        o[k] = Array.isArray(v) ? v.map(String) : String(v);
    }
    return o;
}

async function connect(c) {
    const url = (c.tls ? 'https' : 'http') + '://127.0.0.1:' + c.port;
    const opts = {
        settings: c.settings || {},
        maxSendHeaderBlockLength: 1 << 24,
        maxHeaderListPairs: 1 << 20,
        peerMaxConcurrentStreams: 1000,
    };
    if (c.tls) {
        opts.rejectUnauthorized = false;
        opts.servername = 'localhost';
    }
    const s = http2.connect(url, opts);
    const info = { s, error: null, goaway: null, closed: false };
    sessions.set(c.session, info);
    s.on('error', (e) => { info.error = info.error || String(e.code || e.message); });
    s.on('goaway', (code) => { info.goaway = code; });
    s.on('close', () => { info.closed = true; });
    const ok = await new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), c.timeout || 5000);
        s.once('connect', () => { clearTimeout(t); resolve(true); });
        s.once('error', () => { clearTimeout(t); resolve(false); });
    });
    return ok ? { ok: true, alpn: s.alpnProtocol || null } : { ok: false, error: info.error };
}

function session(name) {
    const info = sessions.get(name);
    if (!info) {
        throw new Error('no session ' + name);
    }
    return info;
}

function startStream(c, sid) {
    const info = session(c.session);
    const st = {
        sid, status: 0, headers: {}, chunks: [], unread: 0, ended: false,
        closed: false, rst: null, error: null, gotHead: false,
    };
    const h = { ':method': c.method || 'GET', ':path': c.path, ...strHeaders(c.headers) };
    let req;
    try {
        req = info.s.request(h, { endStream: !(c.body_b64 !== undefined) });
    } catch (e) {
        st.error = String(e.code || e.message);
        st.closed = true;
        streams.set(sid, st);
        return st;
    }
    st.req = req;
    streams.set(sid, st);
    req.on('response', (hd) => {
        st.status = Number(hd[':status']);
        st.headers = plainHeaders(hd);
        st.gotHead = true;
    });
    req.on('data', (d) => { st.chunks.push(d); });
    req.on('end', () => { st.ended = true; });
    req.on('error', (e) => { st.error = st.error || String(e.code || e.message); });
    req.on('close', () => { st.closed = true; st.rst = req.rstCode; });
    if (c.paused) {
        req.pause();
    }
    if (c.body_b64 !== undefined) {
        req.end(unb64(c.body_b64));
    }
    return st;
}

async function waitFor(cond, ms) {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) {
        await sleep(5);
    }
    return cond();
}

function take(st) {
    const all = Buffer.concat(st.chunks);
    const data = all.subarray(st.unread);
    st.unread = all.length;
    return data;
}

async function request(c) {
    const st = startStream(c, '_req' + Math.random());
    await waitFor(() => st.closed, c.timeout || 5000);
    streams.delete(st.sid);
    const body = Buffer.concat(st.chunks);
    if (!st.closed && st.req) {
        st.req.close(http2.constants.NGHTTP2_CANCEL);
    }
    return {
        status: st.status, headers: st.headers, body_b64: b64(body),
        ended: st.ended, rst: st.rst, error: st.error,
        timeout: !st.closed,
    };
}

async function open(c) {
    const st = startStream(c, c.sid);
    await waitFor(() => st.gotHead || st.closed, c.timeout || 5000);
    return { status: st.status, headers: st.headers, closed: st.closed, rst: st.rst, error: st.error };
}

async function openMany(c) {
    const list = [];
    for (let i = 0; i < c.n; i++) {
        list.push(startStream({ ...c, sid: c.prefix + i }, c.prefix + i));
    }
    await waitFor(() => list.every((st) => st.gotHead || st.closed), c.timeout || 10000);
    return { statuses: list.map((st) => st.status) };
}

async function read(c) {
    const st = streams.get(c.sid);
    if (!st) {
        return { error: 'no stream ' + c.sid };
    }
    const until = c.until_b64 ? unb64(c.until_b64) : null;
    const start = st.unread;
    if (until) {
        await waitFor(() => st.closed
            || Buffer.concat(st.chunks).subarray(start).includes(until), c.timeout || 3000);
    } else if (c.timeout) {
        await sleep(c.timeout);
    }
    const data = take(st);
    return { data_b64: b64(data), ended: st.ended, closed: st.closed, rst: st.rst, error: st.error };
}

async function reset(sids, code) {
    const list = sids.map((sid) => streams.get(sid)).filter((st) => st && st.req);
    for (const st of list) {
        if (!st.closed) {
            st.req.close(code ?? http2.constants.NGHTTP2_CANCEL);
        }
    }
    await waitFor(() => list.every((st) => st.closed), 5000);
    for (const st of list) {
        streams.delete(st.sid);
    }
    return { reset: list.length };
}

async function partial(c) {
    const info = session(c.session);
    const st = {
        sid: '_partial', status: 0, headers: {}, chunks: [], closed: false,
        rst: null, error: null, gotHead: false,
    };
    const req = info.s.request({ ':method': c.method || 'POST', ':path': c.path,
                                 ...strHeaders(c.headers) }, { endStream: false });
    req.on('response', (hd) => { st.status = Number(hd[':status']); st.headers = plainHeaders(hd); st.gotHead = true; });
    req.on('data', (d) => st.chunks.push(d));
    req.on('error', (e) => { st.error = st.error || String(e.code || e.message); });
    req.on('close', () => { st.closed = true; st.rst = req.rstCode; });
    const piece = Buffer.alloc(16384, 'z');
    let sent = 0;
    let sentBeforeAnswer = null;
    // write piece by piece; a piece counts as sent when its callback runs
    const writePieces = async (upTo, ms) => {
        const end = Date.now() + ms;
        while (sent < upTo && !st.gotHead && !st.closed && Date.now() < end) {
            const n = Math.min(piece.length, upTo - sent);
            let done = false;
            req.write(piece.subarray(0, n), () => { done = true; });
            await waitFor(() => done || st.gotHead || st.closed, Math.max(1, end - Date.now()));
            if (!done) {
                break;
            }
            sent += n;
        }
    };
    await writePieces(c.send, c.wait || 3000);
    await waitFor(() => st.gotHead || st.closed, c.wait || 3000);
    const early = st.gotHead;
    sentBeforeAnswer = sent;
    if (!st.gotHead && !st.closed) {
        await writePieces(c.total, 10000);
        if (!st.closed) {
            req.end();
        }
    }
    await waitFor(() => st.closed, 5000);
    if (!st.closed) {
        req.close(http2.constants.NGHTTP2_CANCEL);
    }
    return {
        status: st.status, headers: st.headers, body_b64: b64(Buffer.concat(st.chunks)),
        sent_before_answer: sentBeforeAnswer, answered_early: early,
        rst: st.rst, error: st.error,
    };
}

// --- a few raw frames, for what the http2 module will not send

function frame(type, flags, stream, payload) {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream & 0x7fffffff, 5);
    return Buffer.concat([h, payload]);
}

function hpackLiteral(name, value) {
    // literal header field without indexing, new name, no Huffman
    const enc = (s) => {
        const b = Buffer.from(s, 'latin1');
        if (b.length >= 127) {
            throw new Error('header too long for this encoder');
        }
        return Buffer.concat([Buffer.from([b.length]), b]);
    };
    return Buffer.concat([Buffer.from([0x00]), enc(name), enc(value)]);
}

async function rawZeroWindowUpdate(c) {
    const sock = net.connect(c.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const frames = [];
    let closed = false;
    sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9) {
            const len = buf.readUIntBE(0, 3);
            if (buf.length < 9 + len) {
                break;
            }
            const type = buf[3];
            const stream = buf.readUInt32BE(5) & 0x7fffffff;
            const payload = buf.subarray(9, 9 + len);
            const f = { type, stream, len };
            if (type === 3) { f.name = 'RST_STREAM'; f.code = payload.readUInt32BE(0); }
            else if (type === 7) { f.name = 'GOAWAY'; f.code = payload.readUInt32BE(4); }
            else if (type === 1) { f.name = 'HEADERS'; f.status_byte = payload[0]; }
            else if (type === 0) { f.name = 'DATA'; }
            else if (type === 4) { f.name = 'SETTINGS'; f.ack = !!(buf[4] & 1); }
            else if (type === 8) { f.name = 'WINDOW_UPDATE'; }
            frames.push(f);
            buf = buf.subarray(9 + len);
        }
    });
    sock.on('close', () => { closed = true; });
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
    const block = Buffer.concat([
        hpackLiteral(':method', 'GET'), hpackLiteral(':scheme', 'http'),
        hpackLiteral(':path', c.path), hpackLiteral(':authority', 'localhost'),
    ]);
    sock.write(Buffer.concat([
        Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
        frame(4, 0, 0, Buffer.alloc(0)),
        frame(1, 0x4, 1, block),                   // HEADERS, END_HEADERS
    ]));
    // the stream is open once its response HEADERS are in
    await waitFor(() => frames.some((f) => f.name === 'HEADERS' && f.stream === 1) || closed,
                  c.timeout || 3000);
    const opened = frames.some((f) => f.name === 'HEADERS' && f.stream === 1);
    const inc0 = Buffer.alloc(4);
    sock.write(frame(4, 1, 0, Buffer.alloc(0)));     // SETTINGS ack
    sock.write(frame(8, 0, 1, inc0));                 // WINDOW_UPDATE stream 1, +0
    await waitFor(() => frames.some((f) => (f.name === 'RST_STREAM' && f.stream === 1)
                                           || f.name === 'GOAWAY') || closed, c.timeout || 3000);
    // then the same on the connection
    if (!closed) {
        sock.write(frame(8, 0, 0, inc0));             // WINDOW_UPDATE stream 0, +0
        await waitFor(() => frames.some((f) => f.name === 'GOAWAY') || closed, c.timeout || 3000);
    }
    await sleep(100);
    sock.destroy();
    return { opened, frames, closed };
}

async function run(c) {
    switch (c.op) {
    case 'connect': return connect(c);
    case 'request': return request(c);
    case 'open': return open(c);
    case 'open_many': return openMany(c);
    case 'read': return read(c);
    case 'reset': return reset([c.sid], c.code);
    case 'reset_prefix':
        return reset([...streams.keys()].filter((k) => k.startsWith(c.prefix)), c.code);
    case 'partial': return partial(c);
    case 'raw_zero_window_update': return rawZeroWindowUpdate(c);
    case 'session_state': {
        const info = session(c.session);
        return { closed: info.closed, error: info.error, goaway: info.goaway };
    }
    case 'close': {
        const info = sessions.get(c.session);
        if (info) {
            info.s.close();
            await waitFor(() => info.closed, 2000);
            if (!info.closed) {
                info.s.destroy();
            }
            sessions.delete(c.session);
        }
        return { ok: true };
    }
    case 'exit':
        out({ ok: true });
        process.exit(0);
    default:
        return { error: 'unknown op ' + c.op };
    }
}

const queue = [];
let busy = false;

async function pump() {
    if (busy) {
        return;
    }
    busy = true;
    while (queue.length) {
        const line = queue.shift();
        let c;
        try {
            c = JSON.parse(line);
        } catch (e) {
            out({ error: 'bad command: ' + e.message });
            continue;
        }
        try {
            out({ op: c.op, ...(await run(c)) });
        } catch (e) {
            out({ op: c.op, error: String(e.stack || e) });
        }
    }
    busy = false;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => { if (line.trim()) { queue.push(line); pump(); } });
rl.on('close', () => { const wait = () => (busy || queue.length ? setTimeout(wait, 20) : process.exit(0)); wait(); });
process.on('uncaughtException', (e) => { out({ error: 'uncaught: ' + String(e.stack || e) }); });
