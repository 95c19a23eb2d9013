#!/usr/bin/perl
# What browser code sees, in Chromium: an event published with ?event=<type>
# (or an "event:" line of a text/event-stream batch) reaches the
# addEventListener handlers of that type and not onmessage; a type nobody
# listens for reaches no handler; untyped events reach onmessage; data
# published with LF, CRLF or lone CR between lines arrives with LF between
# them, empty lines and a trailing newline kept; UTF-8 arrives intact; each
# event's lastEventId is the id the publish answered.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use SSETest;
use Browser;

my @problems = Browser::problems();
ok(!@problems, 'Chromium, node and playwright-core are there') or do {
    diag($_) for @problems;
    done_testing;
    exit;
};

my $srv = start_nginx(workers => 2, server_extra => <<'EOS');
        location = /page { default_type text/html; return 200 "<!doctype html><title>page</title>"; }
EOS
my $br = Browser->start;
is($br->goto($srv->url('/page')), 200, 'the page loads');

# the browser code a user writes
$br->eval(<<'JS');
    window.got = [];
    const record = (via) => (e) => got.push({ via, type: e.type, data: e.data, id: e.lastEventId });
    const es = new EventSource('/events/named');
    es.onmessage = record('onmessage');
    es.addEventListener('update', record('update listener'));
    es.addEventListener('tick', record('tick listener'));
    window.opened = new Promise((resolve) => { es.onopen = () => resolve(true); });
    true
JS
ok($br->eval('window.opened'), 'EventSource opened');
ok($srv->wait_stat(subscribers => 1, 10), 'nginx counts the subscriber');

my @want;
sub pub {
    my ($data, %o) = @_;
    my $r = publish($srv, '/pub/named', $data, %o);
    is($r->{status}, 201, 'publish ' . json_encode($data) . ($o{type} ? " type $o{type}" : ''));
    return $r;
}
sub expect {
    my ($via, $type, $data, $id) = @_;
    push @want, { via => $via, type => $type, data => $data, id => $id };
}

my $r;
$r = pub('plain');                          expect('onmessage', 'message', 'plain', $r->{json}{id});
$r = pub("two\nlines", type => 'update');   expect('update listener', 'update', "two\nlines", $r->{json}{id});
$r = pub("crlf\r\nline", type => 'tick');   expect('tick listener', 'tick', "crlf\nline", $r->{json}{id});
$r = pub("lone\rcr");                       expect('onmessage', 'message', "lone\ncr", $r->{json}{id});
$r = pub("gap\n\nafter", type => 'update'); expect('update listener', 'update', "gap\n\nafter", $r->{json}{id});
$r = pub("ends with a newline\n");          expect('onmessage', 'message', "ends with a newline\n", $r->{json}{id});
$r = pub("nobody listens", type => 'other');  # no handler: EventSource drops it
$r = pub("h\xc3\xa9llo \xe2\x9c\x93");      expect('onmessage', 'message', "h\xc3\xa9llo \xe2\x9c\x93", $r->{json}{id});
# a batch: two typed events and an untyped one, in one text/event-stream body
$r = pub("event: tick\ndata: batch 1\n\nevent: update\ndata: batch\ndata: 2\n\ndata: batch 3\n\n",
         content_type => 'text/event-stream');
is($r->{json}{events}, 3, 'the batch published 3 events');
my $last = $r->{json}{id};
expect('tick listener', 'tick', 'batch 1', undef);
expect('update listener', 'update', "batch\n2", undef);
expect('onmessage', 'message', 'batch 3', $last);

ok($br->wait("window.got.length >= " . scalar(@want), 20), scalar(@want) . ' events reached handlers')
    or diag(explain($br->eval('window.got')));
# let a wrongly delivered "other" event show up
sleep 1;
my $got = $br->eval('window.got') || [];
# the batch's first two ids are not in the answer: they come before the last one
my @ids = map { $_->{id} } @$got;
ok(ids_strictly_increasing(@ids), 'lastEventId increases event by event');
for my $i (0 .. $#want) {
    $want[$i]{id} //= $got->[$i]{id} if $got->[$i];
}
is_deeply($got, \@want,
          'each event reached the handler of its type, with its data (LF between lines) and id');
ok(!grep({ $_->{data} eq 'nobody listens' } @$got), 'the type nobody listens for reached no handler');

$br->diag_log unless Test::More->builder->is_passing;
$br->quit;
$srv->stop;
done_testing;
