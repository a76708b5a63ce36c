// The SnapLogic stand-in in benchmark mode, as its own process so it does not share an event loop with what is
// measured.
import { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';

const standIn = await SnapLogicStandIn.start({
  orgs: {},
  benchmark: {
    username: process.env.BENCH_SL_USER ?? 'bench@example.com',
    password: process.env.BENCH_SL_PASSWORD ?? 'bench',
  },
});
process.stdout.write(`ready ${standIn.port}\n`);
process.on('SIGTERM', () => void standIn.close().then(() => process.exit(0)));
