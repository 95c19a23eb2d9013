// A real EventSource client (npm "eventsource") for t/eventsource.t.
//
//   node es-client.mjs <nginx port> <path> [type ...]
//
// It connects through a small TCP proxy of its own, so that the test can
// cut the connection the way a network failure would.  Everything it sees
// is printed as one JSON object per line on stdout:
//   {"type":"ready","proxyPort":N}
//   {"type":"request","n":N,"line":"GET /events/x HTTP/1.1","lastEventId":"..."|null}
//   {"type":"open"}
//   {"type":"event","event":"message","data":"...","lastEventId":"..."}
//   {"type":"error","message":"...","code":N,"readyState":N}
//   {"type":"cut","connections":N}
//   {"type":"response-end","status":N,"chunked":bool}   a response from nginx
//       ended as HTTP/1.1 frames it: its last chunk (0 CRLF CRLF) arrived,
//       or all of its Content-Length
//   {"type":"upstream-closed","midResponse":bool,"cut":bool,"status":N}
//       nginx's side of a proxied connection closed; midResponse: within a
//       response (a stream that ended without its last chunk)
// Commands on stdin, one per line: "cut" (drop every proxied connection),
// "close" (close the EventSource and exit).

import net from 'node:net';
import readline from 'node:readline';
import { EventSource } from 'eventsource';

const [targetPort, path, ...types] = process.argv.slice(2);
if (!targetPort || !path) {
    console.error('usage: es-client.mjs <port> <path> [event types...]');
    process.exit(2);
}

// ts: wall clock in ms, comparable with the test's own clock
const out = (obj) => process.stdout.write(JSON.stringify({ ...obj, ts: Date.now() }) + '\n');

// --- the proxy
const pairs = new Set();
let requests = 0;

// follows the HTTP/1.1 framing of what nginx sends on one connection
function responseReader() {
    let buf = Buffer.alloc(0);
    let state = 'head';         // head | chunk-size | chunk-data | trailer | body
    let status = 0;
    let chunked = false;
    let left = 0;
    const feed = (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
            if (state === 'head') {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) {
                    return;
                }
                const head = buf.subarray(0, end).toString('latin1');
                buf = buf.subarray(end + 4);
                status = Number((/^HTTP\/1\.[01] (\d{3})/.exec(head) || [])[1] || 0);
                chunked = /^transfer-encoding:[ \t]*chunked[ \t]*$/im.test(head);
                const cl = /^content-length:[ \t]*(\d+)/im.exec(head);
                if (chunked) {
                    state = 'chunk-size';
                } else if (cl) {
                    state = 'body';
                    left = Number(cl[1]);
                } else {
                    state = 'body';
                    left = Infinity;            // until the connection closes
                }
            } else if (state === 'chunk-size' || state === 'trailer') {
                const nl = buf.indexOf('\r\n');
                if (nl < 0) {
                    return;
                }
                const line = buf.subarray(0, nl).toString('latin1');
                buf = buf.subarray(nl + 2);
                if (state === 'trailer') {
                    if (line === '') {
                        out({ type: 'response-end', status, chunked: true });
                        state = 'head';
                    }
                    continue;
                }
                left = parseInt(line, 16);
                state = left === 0 ? 'trailer' : 'chunk-data';
                if (Number.isNaN(left)) {
                    out({ type: 'framing-error', line });
                    state = 'body';
                    left = Infinity;
                }
            } else if (state === 'chunk-data') {
                if (buf.length < left + 2) {
                    return;
                }
                buf = buf.subarray(left + 2);
                state = 'chunk-size';
            } else {
                const n = Math.min(left, buf.length);
                buf = buf.subarray(n);
                left -= n;
                if (left === 0) {
                    out({ type: 'response-end', status, chunked: false });
                    state = 'head';
                    continue;
                }
                return;
            }
        }
    };
    const midResponse = () => state !== 'head' || buf.length > 0;
    return { feed, midResponse, status: () => status };
}

const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(targetPort), '127.0.0.1');
    const pair = { client, upstream, cut: false };
    pairs.add(pair);
    const reader = responseReader();
    let reported = false;
    const upstreamClosed = () => {
        if (!reported) {
            reported = true;
            out({ type: 'upstream-closed', midResponse: reader.midResponse(),
                  cut: pair.cut, status: reader.status() });
        }
    };
    let head = '';
    client.on('data', (d) => {
        // report every request head that goes through (GETs have no body)
        head += d.toString('latin1');
        let i;
        while ((i = head.indexOf('\r\n\r\n')) >= 0) {
            const text = head.slice(0, i);
            head = head.slice(i + 4);
            const m = /^last-event-id:[ \t]*(.*?)[ \t]*$/im.exec(text);
            out({ type: 'request', n: ++requests, line: text.split('\r\n')[0],
                  lastEventId: m ? m[1] : null });
        }
        upstream.write(d);
    });
    upstream.on('data', (d) => { reader.feed(d); client.write(d); });
    upstream.on('end', () => { upstreamClosed(); client.end(); });
    client.on('end', () => upstream.end());
    const drop = () => {
        upstreamClosed();
        client.destroy();
        upstream.destroy();
        pairs.delete(pair);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
});

proxy.listen(0, '127.0.0.1', () => {
    const port = proxy.address().port;
    out({ type: 'ready', proxyPort: port });

    const es = new EventSource(`http://127.0.0.1:${port}${path}`);
    es.addEventListener('open', () => out({ type: 'open' }));
    es.addEventListener('error', (e) => out({
        type: 'error', message: e.message ?? null, code: e.code ?? null,
        readyState: es.readyState,
    }));
    const onEvent = (e) => out({
        type: 'event', event: e.type, data: e.data, lastEventId: e.lastEventId,
    });
    for (const t of new Set(['message', ...types])) {
        es.addEventListener(t, onEvent);
    }

    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
        const cmd = line.trim();
        if (cmd === 'cut') {
            const n = pairs.size;
            for (const p of [...pairs]) {
                p.cut = true;
                p.client.destroy();
                p.upstream.destroy();
                pairs.delete(p);
            }
            out({ type: 'cut', connections: n });
        } else if (cmd === 'close') {
            es.close();
            for (const p of [...pairs]) {
                p.cut = true;
                p.client.destroy();
                p.upstream.destroy();
            }
            proxy.close();
            out({ type: 'closed' });
            setTimeout(() => process.exit(0), 50);
        }
    });
    rl.on('close', () => process.exit(0));
});

// never outlive a test that died
setTimeout(() => {
    out({ type: 'timeout' });
    process.exit(3);
}, 120_000).unref();
