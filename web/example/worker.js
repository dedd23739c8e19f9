import { serveJanus } from 'janusweb/worker';
serveJanus(self);
