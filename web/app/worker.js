// The demo site's worker (built as worker.js beside ui.js): the library's worker adapter, nothing more.
import { serveJanus } from '../lib/worker.js';

serveJanus(self);
