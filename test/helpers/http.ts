// A plain node:http client for tests: sends the request target byte for byte (no URL normalisation).
import { request } from 'node:http';
import { recordOutput } from './leak-scan.js';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The parsed JSON body, or undefined when it is not JSON. */
  json: any;
}

/** The Basic authorization value SnapLogic expects for `user` and `password`. */
export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export async function send(
  baseUrl: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string; agent?: false } = {},
): Promise<Reply> {
  const u = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, method, path, headers: options.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          // Every answer snapgate gives in a test is checked for secrets at the end of the run.
          recordOutput(`${res.statusCode} ${JSON.stringify(res.headers)} ${text}`);
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

/** POST to the runtime start path for org/ruuid with a bearer token. */
export function resume(
  baseUrl: string,
  org: string,
  ruuid: string,
  token?: string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return send(baseUrl, 'POST', `/api/1/rest/public/runtime/start/${org}/${ruuid}`, {
    headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers },
  });
}

/** Adds a suspended run of `org` (Acme-Prod unless given) to the stand-in and resumes it at `baseUrl`. */
export function resumeNewRun(
  baseUrl: string,
  standIn: { addRun(org: string): string },
  token?: string,
  options: { org?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const org = options.org ?? 'Acme-Prod';
  return resume(baseUrl, org, standIn.addRun(org), token, options.headers);
}
