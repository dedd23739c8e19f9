// Added to a bench page by janusweb.bench.pagerun's HTTP driver (hosts without Playwright): once the page
// defines window[fn], it runs fn(config) and POSTs the value, or the error, to the Python process serving it.
const id = new URLSearchParams(location.search).get('jwcall');
let sent = false;
const post = async (body) => {
  if (sent) return;
  sent = true;
  await fetch(`/__jw/result?id=${id}`, { method: 'POST', body: JSON.stringify({ ...body, userAgent: navigator.userAgent }) });
};
const describe = (e) => (e && e.name ? `${e.name}: ${e.message}` : String(e));
addEventListener('error', (e) => post({ error: `uncaught in the page: ${describe(e.error || e.message)}` }));
addEventListener('unhandledrejection', (e) => post({ error: `unhandled rejection in the page: ${describe(e.reason)}` }));
try {
  const job = await (await fetch(`/__jw/job?id=${id}`)).json();
  while (typeof window[job.fn] !== 'function') await new Promise((r) => setTimeout(r, 50));
  await post({ value: await window[job.fn](job.config) });
} catch (e) {
  await post({ error: describe(e) });
}
