#!/usr/bin/perl
# Redis mode, the XADD ingress: entries a backend appends to sse:log itself
# are delivered on both nodes with the id XADD gave them; bad entries (a
# bad or missing channel, no data, invalid UTF-8, NUL, a bad event type,
# data over sse_max_message_size) are delivered nowhere and logged at warn
# in error.log, and the good entries after them are still delivered.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $http = "sse_history 100;\nsse_heartbeat 1s;\nsse_max_message_size 1k;\n";
my $A = start_node(redis => $r, name => 'A', http => $http);
my $B = start_node(redis => $r, name => 'B', http => $http);

my %subs = (
    'A news'       => $A->sse_connect('/events/news'),
    'B news'       => $B->sse_connect('/events/news'),
    'B news,other' => $B->sse_connect('/events/news,other'),
    'A other'      => $A->sse_connect('/events/other'),
);
is(join(',', map { $subs{$_}->status } sort keys %subs), '200,200,200,200', 'streams open on both nodes');
my %want = map { $_ => [] } keys %subs;
sub add_good {
    my ($id, $ch, $type, $data) = @_;
    my $e = { id => $id, event => $type // 'message', data => $data };
    for my $k (keys %subs) {
        my ($list) = $k =~ / (\S+)$/;
        push @{ $want{$k} }, $e if grep { $_ eq $ch } split /,/, $list;
    }
}

# --- good entries
my $g1 = $r->xadd('sse:log', channel => 'news', data => 'good 1');
add_good($g1, 'news', undef, 'good 1');
my $g2 = $r->xadd('sse:log', channel => 'news', event => 'tick', data => "good 2\nsecond line");
add_good($g2, 'news', 'tick', "good 2\nsecond line");
my $g3 = $r->xadd('sse:log', channel => 'other', data => 'good 3');
add_good($g3, 'other', undef, 'good 3');
for my $k (sort keys %subs) {
    my $n = @{ $want{$k} };
    same_events([$subs{$k}->read_events(count => $n, timeout => 10)], $want{$k},
                "$k: the XADDed entries, with the ids XADD answered");
    $want{$k} = [];
}
my $g = $B->http('GET', '/pub/news');
is(($g->{json}{id} // '') . ' ' . ($g->{json}{events} // ''), "$g2 2", 'GET /pub/news on B: the XADDed entries are kept');

# --- bad entries
my %mark = (A => $A->log_mark, B => $B->log_mark);
my @bad = (
    ['bad channel name',         channel => 'bad name', data => 'x'],
    ['a list as channel',        channel => 'news,other', data => 'list'],
    ['a list of 16 channels',    channel => join(',', map { "c$_" } 1..16), data => 'list'],
    ['a list of 17 channels',    channel => join(',', map { "c$_" } 1..17), data => 'list'],
    ['channel of 129 bytes',     channel => 'n' x 129, data => 'x'],
    ['empty channel',            channel => '', data => 'x'],
    ['no channel field',         data => 'no channel'],
    ['no data field',            channel => 'news'],
    ['no data field, an event',  channel => 'news', event => 'tick'],
    ['empty data',               channel => 'news', data => ''],
    ['invalid UTF-8 data',       channel => 'news', data => "bad \xff\xfe utf-8"],
    ['overlong UTF-8 data',      channel => 'news', data => "\xc0\xaf"],
    ['NUL in data',              channel => 'news', data => "a\0b"],
    ['event type with a space',  channel => 'news', event => 'bad type', data => 'x'],
    ['event type with a colon',  channel => 'news', event => 'a:b', data => 'x'],
    ['event type of 65 bytes',   channel => 'news', event => 'e' x 65, data => 'x'],
    ['NUL in the event type',    channel => 'news', event => "t\0", data => 'x'],
    ['data over sse_max_message_size', channel => 'news', data => 'z' x 2000],
);
my @bad_ids;
for my $b (@bad) {
    my ($name, @fv) = @$b;
    push @bad_ids, [$name, $r->xadd('sse:log', @fv)];
}
my $g4 = $r->xadd('sse:log', channel => 'news', data => 'good after the bad ones');
add_good($g4, 'news', undef, 'good after the bad ones');
my $g5 = $r->xadd('sse:log', channel => 'other', event => 'ok', data => 'good 5');
add_good($g5, 'other', 'ok', 'good 5');
for my $k (sort keys %subs) {
    my $n = @{ $want{$k} };
    same_events([$subs{$k}->read_events(count => $n, timeout => 10)], $want{$k},
                "$k: after " . @bad . ' bad entries, only the good ones that follow');
}
sleep 1;
my @more = grep { scalar $subs{$_}->read_events(timeout => 0) } sort keys %subs;
is("@more", '', 'a second later, no stream got anything more');
for my $n (['A', $A], ['B', $B]) {
    my $g = $n->[1]->http('GET', '/pub/news');
    is(($g->{json}{id} // '') . ' ' . ($g->{json}{events} // ''), "$g4 3",
       "GET /pub/news on $n->[0]: the bad entries were not kept");
}

# --- logged at warn
for my $n (['A', $A], ['B', $B]) {
    my ($name, $srv) = @$n;
    my $since = $srv->error_log_since($mark{$name});
    my @warn = log_lines($since, 'warn');
    ok(@warn >= @bad, "$name: error.log has a [warn] line for each of the " . @bad . ' bad entries (' . @warn . ')')
        or diag($since);
    my @missing = map { "$_->[0] ($_->[1])" } grep { my $id = $_->[1]; !grep { index($_, $id) >= 0 } @warn } @bad_ids;
    is(join('; ', @missing), '', "$name: each [warn] line names the entry's id, so the bad entry can be found");
    my @worse = log_lines($since, qw(crit alert emerg));
    is(scalar @worse, 0, "$name: nothing above [error] for bad entries");
}

$_->close for values %subs;
$A->stop;
$B->stop;
$r->stop;
done_testing;
