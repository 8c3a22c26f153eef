#!/usr/bin/python3
"""Loads a page in headless Chromium and prints what a test needs to know
about it as one JSON object: the facts a script in the page computes from
the DOM (FACTS_JS below), every network request the page made, every
console message and uncaught exception, the result of clicking a sortable
header, what dark mode and print media change, and the path of a
full-page screenshot.

Usage: cdp_page.py CHROMIUM PAGE.html SCREENSHOT.png

Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: commands on fd 3, events and answers on fd 4,
each message a JSON text ended by NUL), so no port is opened and nothing
but the standard library is needed. Exits 1 with a message on stderr when
the browser does not start or does not answer within the time limit.
"""
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

LIMIT_S = 90

FACTS_JS = r"""
(() => {
  const all = (s, root) => Array.from((root || document).querySelectorAll(s));
  const text = e => e ? e.textContent.trim() : null;
  const chart = id => {
    const e = document.getElementById(id);
    if (!e) return null;
    const r = e.getBoundingClientRect();
    return {
      points: all('.pt', e).length,
      declared: Number(e.dataset.points), slots: Number(e.dataset.slots),
      series: Number(e.dataset.series), step: Number(e.dataset.step),
      xticks: all('g.axis.x text.tick', e).map(text),
      yticks: all('g.axis.y text.tick', e).map(text),
      titles: all('text.axis-title', e).map(text),
      width: r.width, height: r.height,
      visible: r.width > 0 && r.height > 0
    };
  };
  const rows = id => {
    const t = document.getElementById(id);
    if (!t) return null;
    return Array.from(t.tBodies[0].rows).map(r => Array.from(r.cells).map(text));
  };
  return {
    title: document.title,
    totals: text(document.getElementById('totals')),
    charts: {calls: chart('chart-calls'), time: chart('chart-time'), p95: chart('chart-p95')},
    hists: all('svg.hist').map(e => ({
      id: e.id, bins: all('rect.bin', e).length,
      count: all('rect.bin', e).reduce((a, b) => a + Number(b.dataset.n), 0),
      declared: Number(e.dataset.count), titles: all('text.axis-title', e).map(text),
      xticks: all('g.axis.x text.tick', e).map(text)
    })),
    queries: rows('query-table'),
    errors: rows('error-codes'),
    groups: rows('group-database'),
    groups_user: rows('group-user'),
    groups_application: rows('group-application'),
    groups_host: rows('group-host'),
    rows_by: text(document.getElementById('rows-by')),
    filters: text(document.getElementById('filters')),
    nav: all('nav a').map(a => a.getAttribute('href')),
    tops: all('table.top').map(t => ({id: t.id, rows: Array.from(t.tBodies[0].rows).length})),
    legend: all('ul.legend li').map(text),
    samples: all('pre.sample').map(text),
    advice: all('table.advice-indexes').map(t =>
      Array.from(t.tBodies[0].rows).map(r => Array.from(r.cells).map(text))),
    advice_links: all('#advice a').map(a => ({href: a.getAttribute('href'),
      target: !!document.getElementById(a.getAttribute('href').slice(1))})),
    advice_from: text(document.querySelector('#advice p.note')),
    query_advice: all('ul.query-advice li').map(text),
    findings: all('ul.findings li').map(text),
    scripts: all('script').map(s => ({src: s.getAttribute('src'), inline: s.textContent.length})),
    external: all('[src],link[href],img,iframe,object,embed').length
  };
})()
"""


class Browser:
    def __init__(self, chromium, profile):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        args = [chromium, '--headless', '--no-sandbox', '--disable-gpu',
                '--disable-background-networking', '--no-first-run',
                '--no-default-browser-check', '--disable-extensions',
                '--disable-component-update', '--disable-sync',
                '--user-data-dir=' + profile, '--remote-debugging-pipe',
                '--window-size=1280,900', 'about:blank']

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=fds,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b''
        self.next_id = 0
        self.events = []
        self.deadline = time.monotonic() + LIMIT_S

    def _read_message(self):
        while b'\0' not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('chromium did not answer within %d s' % LIMIT_S)
            ready, _, _ = select.select([self.from_chrome], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise EOFError('chromium closed the pipe (exit %s)' % self.proc.poll())
            self.buf += chunk
        msg, self.buf = self.buf.split(b'\0', 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session:
            msg['sessionId'] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b'\0')
        while True:
            m = self._read_message()
            if m.get('id') == self.next_id:
                if 'error' in m:
                    raise RuntimeError('%s: %s' % (method, m['error']))
                return m.get('result', {})
            self.events.append(m)

    def wait_event(self, method):
        for i, m in enumerate(self.events):
            if m.get('method') == method:
                return self.events.pop(i)
        while True:
            m = self._read_message()
            if m.get('method') == method:
                return m
            self.events.append(m)

    def close(self):
        try:
            self.send('Browser.close')
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def evaluate(b, s, expr):
    r = b.send('Runtime.evaluate', {'expression': expr, 'returnByValue': True}, s)
    if 'exceptionDetails' in r:
        raise RuntimeError('evaluation failed: %s' % r['exceptionDetails'])
    return r['result'].get('value')


def main():
    if len(sys.argv) != 4:
        sys.exit('usage: cdp_page.py CHROMIUM PAGE.html SCREENSHOT.png')
    chromium, page, shot = sys.argv[1:]
    url = 'file://' + os.path.abspath(page)
    profile = tempfile.mkdtemp(prefix='qprof-chromium-')
    b = Browser(chromium, profile)
    try:
        targets = b.send('Target.getTargets')['targetInfos']
        tid = next(t['targetId'] for t in targets if t['type'] == 'page')
        s = b.send('Target.attachToTarget', {'targetId': tid, 'flatten': True})['sessionId']
        for m in ('Page.enable', 'Runtime.enable', 'Log.enable', 'Network.enable'):
            b.send(m, {}, s)
        b.events.clear()  # what about:blank did is not the page's
        b.send('Page.navigate', {'url': url}, s)
        b.wait_event('Page.loadEventFired')
        facts = evaluate(b, s, FACTS_JS)
        # The sorting script works: the calls column, clicked twice, ascending.
        sort = evaluate(b, s, r"""
          (() => {
            const t = document.getElementById('query-table');
            if (!t) return null;
            const h = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === 'calls');
            const first = () => t.tBodies[0].rows[0].cells[h].textContent;
            t.tHead.rows[0].cells[h].click();
            const desc = first();
            t.tHead.rows[0].cells[h].click();
            return {desc: desc, asc: first(),
                    aria: t.tHead.rows[0].cells[h].getAttribute('aria-sort')};
          })()""")
        style = r"""(() => ({bg: getComputedStyle(document.body).backgroundColor,
                    nav: document.querySelector('nav') ?
                         getComputedStyle(document.querySelector('nav')).display : null}))()"""
        light = evaluate(b, s, style)
        b.send('Emulation.setEmulatedMedia',
               {'features': [{'name': 'prefers-color-scheme', 'value': 'dark'}]}, s)
        dark = evaluate(b, s, style)
        b.send('Emulation.setEmulatedMedia', {'media': 'print', 'features': []}, s)
        printed = evaluate(b, s, style)
        b.send('Emulation.setEmulatedMedia', {'media': '', 'features': []}, s)
        # a full-page screenshot
        m = b.send('Page.getLayoutMetrics', {}, s)
        size = m.get('cssContentSize') or m['contentSize']
        b.send('Emulation.setDeviceMetricsOverride',
               {'width': 1280, 'height': int(min(size['height'], 16000)),
                'deviceScaleFactor': 1, 'mobile': False}, s)
        png = b.send('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': True}, s)
        with open(shot, 'wb') as f:
            f.write(base64.b64decode(png['data']))
        requests, console = [], []
        for e in b.events:
            meth, p = e.get('method'), e.get('params', {})
            if meth == 'Network.requestWillBeSent':
                requests.append(p['request']['url'])
            elif meth == 'Runtime.consoleAPICalled':
                console.append({'kind': 'console.' + p.get('type', ''),
                                'text': ' '.join(str(a.get('value', a.get('description', '')))
                                                 for a in p.get('args', []))})
            elif meth == 'Runtime.exceptionThrown':
                console.append({'kind': 'exception',
                                'text': p['exceptionDetails'].get('text', '')})
            elif meth == 'Log.entryAdded':
                entry = p['entry']
                console.append({'kind': 'log.' + entry.get('level', ''),
                                'text': entry.get('text', '') + ' ' + entry.get('url', '')})
        json.dump({'url': url, 'facts': facts, 'sort': sort, 'light': light, 'dark': dark,
                   'print': printed, 'requests': requests, 'console': console,
                   'screenshot': shot, 'screenshot_bytes': os.path.getsize(shot)},
                  sys.stdout, indent=1)
        print()
    except Exception as e:  # the browser's own output says why it stopped
        err = b.proc.stderr.read1(65536).decode(errors='replace') if b.proc.poll() is not None else ''
        sys.stderr.write('cdp_page.py: %s\n%s' % (e, err))
        b.close()
        shutil.rmtree(profile, ignore_errors=True)
        sys.exit(1)
    b.close()
    shutil.rmtree(profile, ignore_errors=True)


if __name__ == '__main__':
    main()
