// The ES module face of sessiond-client/express-session; the code is CommonJS.
import store from './express-session-store.js';

export const { SessiondStore, genid } = store;
export default store;
