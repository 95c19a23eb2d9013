// A stream reader that can stop reading, over HTTP or HTTPS, for t/21-tls.t.
//
//   node tls-stream.mjs <port> <path> <tls 0|1> <expect> <timeout ms>
//
// Connects, sends the GET, and prints {"type":"ready"} once the response
// headers are in.  Then it stops reading the socket (the server's output
// piles up) until a line "go" arrives on stdin; then it reads until the
// response ends, <expect> events have arrived, or <timeout ms> pass, and
// prints one JSON line: the status, the events by their 4-digit number (from
// "data: NNNN "), whether the chunked body ended with its last chunk, whether
// the server closed the connection, and any framing error.

import net from 'node:net';
import tls from 'node:tls';
import readline from 'node:readline';

const [port, path, useTls, expect, timeout] = process.argv.slice(2);

const opts = { host: '127.0.0.1', port: Number(port) };
const sock = useTls === '1'
    ? tls.connect({ ...opts, rejectUnauthorized: false, servername: 'localhost' })
    : net.connect(opts);

let raw = Buffer.alloc(0);
let head = null;
let status = 0;
let body = Buffer.alloc(0);     // the dechunked body
let rest = Buffer.alloc(0);     // chunked bytes not parsed yet
let lastChunk = false;
let error = null;
let closed = false;
let going = false;
let done = false;

function dechunk() {
    for (;;) {
        if (lastChunk || error) {
            return;
        }
        const crlf = rest.indexOf('\r\n');
        if (crlf < 0) {
            return;
        }
        const size = parseInt(rest.subarray(0, crlf).toString(), 16);
        if (Number.isNaN(size)) {
            error = 'bad chunk size line: ' + JSON.stringify(rest.subarray(0, 20).toString());
            return;
        }
        if (rest.length < crlf + 2 + size + 2) {
            return;
        }
        if (rest.subarray(crlf + 2 + size, crlf + 4 + size).toString() !== '\r\n') {
            error = 'chunk of ' + size + ' bytes not followed by CRLF';
            return;
        }
        if (size === 0) {
            lastChunk = true;
        }
        body = Buffer.concat([body, rest.subarray(crlf + 2, crlf + 2 + size)]);
        rest = rest.subarray(crlf + 4 + size);
    }
}

function events() {
    const seen = [];
    for (const m of body.toString('latin1').matchAll(/^data: (\d{4}) /gm)) {
        seen.push(Number(m[1]));
    }
    return seen;
}

function report() {
    if (done) {
        return;
    }
    done = true;
    const ev = events();
    process.stdout.write(JSON.stringify({
        type: 'result', status, events: ev.length,
        distinct: new Set(ev).size, in_order: ev.every((v, i) => i === 0 || v > ev[i - 1]),
        last_chunk: lastChunk, closed, error, body_bytes: body.length,
    }) + '\n');
    sock.destroy();
    process.exit(0);
}

sock.on('data', (d) => {
    if (head === null) {
        raw = Buffer.concat([raw, d]);
        const end = raw.indexOf('\r\n\r\n');
        if (end < 0) {
            return;
        }
        head = raw.subarray(0, end).toString();
        status = Number((head.match(/^HTTP\/1\.1 (\d+)/) || [])[1] || 0);
        rest = raw.subarray(end + 4);
        if (!going) {
            sock.pause();
            process.stdout.write(JSON.stringify({ type: 'ready', status }) + '\n');
        }
    } else {
        rest = Buffer.concat([rest, d]);
    }
    dechunk();
    if (going && (lastChunk || error || events().length >= Number(expect))) {
        /* the connection should close after the last chunk: give it a moment */
        if (lastChunk) {
            setTimeout(report, 300);
        } else {
            report();
        }
    }
});

sock.on('end', () => { closed = true; });
sock.on('close', () => { closed = true; if (going) report(); });
sock.on('error', (e) => { error = error || String(e.message); });

sock.on(useTls === '1' ? 'secureConnect' : 'connect', () => {
    sock.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n`);
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'go' && !going) {
        going = true;
        setTimeout(report, Number(timeout));
        sock.resume();
    }
});
