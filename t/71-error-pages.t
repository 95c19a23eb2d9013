#!/usr/bin/perl
# nginx's own error answers in our locations (deny, limit_req,
# auth_request, a body over client_max_body_size...) carry the same
# one-line JSON body as the module's own errors; what the user configured
# (return with a text, error_page) is left as it is, and other locations
# keep nginx's HTML pages.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(
    workers => 1,
    http => <<'EOH',
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
EOH
    server_extra => <<'EOS',
        location ~ ^/denied/(.+)$ { deny all; sse_publish $1; }
        location ~ ^/limited/(.+)$ { limit_req zone=one nodelay; sse_stream $1; }
        location ~ ^/authed/(.+)$ { auth_request /_no; sse_stream $1; }
        location = /_no { internal; return 401; }
        location ~ ^/small/(.+)$ { client_max_body_size 1k; sse_publish $1; }
        location = /st-denied { deny all; sse_status; }
        location ~ ^/texted/(.+)$ {
            if ($arg_no) { return 403 "my own words"; }
            sse_stream $1;
        }
        location ~ ^/paged/(.+)$ { deny all; error_page 403 /mine; sse_stream $1; }
        location = /mine { return 200 "my page\n"; }
        location = /plain { deny all; }
EOS
);

check_json_error($srv->publish('/denied/x', 'a'), 403, 'deny in a publish location');
my $e = $srv->publish('/denied/x', 'a');
is($e->{json}{error}, 'forbidden', '... says "forbidden"');
is($e->{headers}{'content-length'}, length $e->{body}, '... with its own Content-Length');

check_json_error($srv->http('GET', '/st-denied'), 403, 'deny in a status location');

my $s = $srv->http('GET', '/limited/y');
is($s->{status}, 200, 'limit_req: the first stream is served');
my $l = $srv->http('GET', '/limited/y');
check_json_error($l, 503, 'limit_req in a stream location');
is($l->{json}{error}, 'service unavailable', '... says "service unavailable"');

my $a = $srv->http('GET', '/authed/z');
check_json_error($a, 401, 'auth_request refusing a stream');
is($a->{json}{error}, 'unauthorized', '... says "unauthorized"');

my $big = $srv->publish('/small/w', 'b' x 2048);
check_json_error($big, 413, 'a body over client_max_body_size (Content-Length)');
is($big->{json}{error}, 'request body too large', '... says "request body too large"');
is($srv->http('GET', '/pub/w')->{status}, 404, '... and nothing was published');

my $h = $srv->http('HEAD', '/denied/x');
is($h->{status}, 403, 'HEAD in a denied location: 403');
is($h->{body}, '', '... with no body');

# what the user wrote stays
my $t = $srv->http('GET', '/texted/v?no=1');
is($t->{status}, 403, 'return 403 "text": 403');
is($t->{body}, 'my own words', '... with the text of the configuration');
like($t->{headers}{'content-type'} // '', qr{^text/plain}, '... as text/plain');

my $p = $srv->http('GET', '/paged/u');
is($p->{status}, 403, 'error_page 403 /mine: still 403');
is($p->{body}, "my page\n", '... with the page of the configuration, as it is');

# outside our locations nginx keeps its own pages
my $o = $srv->http('GET', '/plain');
is($o->{status}, 403, 'deny in another location: 403');
like($o->{headers}{'content-type'} // '', qr{^text/html}, '... with nginx\'s HTML page');
like($o->{body}, qr{<html>}, '... as it is');

# and a stream after all that works
my $sub = $srv->sse_connect('/events/ok');
is($sub->status, 200, 'a stream');
my $r = $srv->publish('/pub/ok', 'fine');
is($r->{status}, 201, 'a publish');
my @ev = $sub->read_events(count => 1, timeout => 3);
is($ev[0]{data}, 'fine', 'the stream gets it');

$srv->stop;
done_testing();
