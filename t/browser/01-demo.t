#!/usr/bin/perl
# The demo page in Chromium, served by conf-examples/demo.conf as make run
# serves it: the page connects, an event published with curl (the line the
# page and make run print) appears in its table with its id, type and data,
# one published from the page's own form too, and the hub chart draws the
# status stream (/status with Accept: text/event-stream, a "stats" event a
# second): deliveries/s and publishes/s above zero while events flow.
# The screenshot is build/screenshots/demo.png.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use SSETest;
use Browser;
use Example;
use Time::HiRes qw(time sleep);

my @problems = Browser::problems();
ok(!@problems, 'Chromium, node and playwright-core are there') or do {
    diag($_) for @problems;
    done_testing;
    exit;
};
ok(system('curl --version >/dev/null 2>&1') == 0, 'curl is installed') or do { done_testing; exit };

my $repo = repo_dir();
my $port = SSETest::_free_port();
my $ex = Example->demo($port);
my $t = $ex->config_test;
ok($t->{ok}, 'demo.conf passes nginx -t') or diag($t->{output});
my $srv = $ex->start;
my $base = "http://127.0.0.1:$port";

my $br = Browser->start;
ok($br, 'Chromium started (' . $br->version . ')');
is($br->goto("$base/"), 200, 'the page loads');
my $state = q{document.getElementById('state').textContent};
ok($br->wait("$state === 'open'", 30), 'the page shows its stream open')
    or diag('state: ' . ($br->eval($state) // $br->error));
like($br->eval(q{document.getElementById('url').textContent}), qr{/events/news},
     'it shows the stream it opened');

# the table: [id, type, data, time], oldest first
my $rows_js = q{[...document.querySelectorAll('#events tr')].reverse()
                .map(tr => [...tr.cells].map(td => td.textContent))};
sub rows { my $r = $br->eval($rows_js); ref $r ? @$r : () }

# a POST from outside, with curl as a user types it
sub curl_publish {
    my (@args) = @_;
    my $out = qx{curl -s @args 2>&1};
    my $j = eval { json_decode($out) };
    ok($j && $j->{id}, "curl @args answers the publish JSON") or diag($out);
    return $j;
}
# printf '...' | curl --data-binary @- ...
sub curl_publish_stdin {
    my ($data, @args) = @_;
    open my $fh, '-|', 'sh', '-c', 'printf "%s" "$1" | curl -s ' . join(' ', @args), 'sh', $data
        or die "curl: $!";
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    my $j = eval { json_decode($out) };
    ok($j && $j->{id}, "printf ... | curl @args answers the publish JSON") or diag($out);
    return $j;
}
my $p1 = curl_publish("-d 'hello from curl'", "'$base/publish/news'");
my $p2 = curl_publish_stdin("line one\nline two", "--data-binary \@- '$base/publish/news?event=update'");
ok($br->wait(q{document.querySelectorAll('#events tr').length >= 2}, 20), 'two rows appear')
    or diag(explain([rows()]));
my @rows = rows();
is_deeply([map { [@$_[0 .. 2]] } @rows[0, 1]],
          [[$p1->{id}, 'message', 'hello from curl'], [$p2->{id}, 'update', "line one\nline two"]],
          'the table shows their ids, types and data (two lines in one cell)');
is($br->eval(q{document.getElementById('last-id').textContent}), $p2->{id},
   'the page shows the last event id');

# the page's own form
$br->fill('#pub-type', 'tick');
$br->fill('#pub-data', 'from the form');
$br->click('#publish button');
ok($br->wait(q{document.querySelectorAll('#events tr').length >= 3}, 20), 'the form\'s event appears');
my $answer = $br->eval(q{document.getElementById('answer').textContent}) // '';
like($answer, qr/^201 /, "the form shows the publish answer ($answer)");
my $last = (rows())[-1];
is_deeply([@$last[1, 2]], ['tick', 'from the form'], 'with its type and data');

# the chart: fed by the stats stream; events flow while we look
my $hub = q{({ state: document.getElementById('hub-state').textContent,
              samples: Number(document.getElementById('chart').dataset.samples || 0),
              d: Number(document.getElementById('now-deliveries').textContent),
              p: Number(document.getElementById('now-publishes').textContent),
              s: Number(document.getElementById('now-subscribers').textContent),
              dl: document.getElementById('line-deliveries').getAttribute('points'),
              pl: document.getElementById('line-publishes').getAttribute('points') })};
my ($seen, $first_points);
my $deadline = time() + 30;
my $n = 0;
while (time() < $deadline) {
    publish($srv, '/publish/news', 'tick ' . ++$n) for 1 .. 3;
    my $h = $br->eval($hub) or last;
    $first_points //= $h->{dl} if $h->{samples} >= 1;
    if ($h->{samples} >= 3 && $h->{d} > 0 && $h->{p} > 0 && $h->{s} >= 1
        && defined $first_points && $h->{dl} ne $first_points) {
        $seen = $h;
        last;
    }
    sleep 0.3;
}
my $h = $seen || $br->eval($hub) || {};
is($h->{state}, 'live', 'the hub part shows the stats stream live')
    or diag("hub: " . json_encode($h));
ok($seen, 'the chart moves: deliveries/s and publishes/s above zero, a subscriber, new points each second')
    or diag("hub: " . json_encode($h));
if ($seen) {
    # a point above the baseline (y 140) on both lines
    my @dy = map { (split /,/)[1] } split ' ', $seen->{dl};
    my @py = map { (split /,/)[1] } split ' ', $seen->{pl};
    ok((grep { $_ < 139 } @dy) && (grep { $_ < 139 } @py), 'both lines rise above zero');
}

# the screenshot, after the events arrived (and the chart, if it drew)
ok($br->wait(q{document.querySelectorAll('#events tr').length >= 6}, 20), 'the flow shows in the table');
my $shot = "$repo/build/screenshots/demo.png";
is($br->screenshot($shot, fullPage => JSONBool::TRUE()), $shot, "screenshot saved: $shot");
ok(-s $shot > 10_000, 'the screenshot is a real picture');

my @errors = grep { /^pageerror/ } $br->log_lines;
is_deeply(\@errors, [], 'no JavaScript error on the page');
$br->diag_log unless Test::More->builder->is_passing;
$br->quit;
$srv->stop;
done_testing;
