import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {generateRunKeys, renderSeed, serveSeed} from './seed.js'

const TEMPLATES = join(import.meta.dirname, '..', '..', 'templates')

const get = async (port: number, path: string) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`)
  return {status: r.status, body: await r.text()}
}

describe('serveSeed (issue #29, 4): the guest host key is not served to any local user', () => {
  it('serves the seed only under its random path: the well-known NoCloud paths, and any other, are 404', async () => {
    const keys = generateRunKeys()
    const seed = await renderSeed(TEMPLATES, keys, {hostname: 'seed-test'})
    const hostKeyBody = keys.hostPrivateKey.split('\n')[1]
    expect(seed.userData).toContain(hostKeyBody)
    const srv = await serveSeed(seed)
    try {
      expect(srv.base).toMatch(/^\/[0-9a-f]{64}\/$/)
      for (const path of ['/user-data', '/meta-data', '/vendor-data', '/', `${srv.base.slice(0, 20)}/user-data`, `${srv.base}../user-data`]) {
        const r = await get(srv.port, path)
        expect(r.status, path).toBe(404)
        expect(r.body).not.toContain(hostKeyBody)
      }
      const ok = await get(srv.port, `${srv.base}user-data`)
      expect(ok.status).toBe(200)
      expect(ok.body).toContain(hostKeyBody)
      expect((await get(srv.port, `${srv.base}meta-data`)).body).toBe(seed.metaData)
      // the request log (printed in the run's log) names the file, never the token
      expect(srv.requests).toContain('GET /<token>/user-data')
      expect(srv.requests.join('\n')).not.toContain(srv.base.slice(1, -1))
    } finally {
      await srv.close()
    }
  })

  it('gives each server a path of its own', async () => {
    const seed = {userData: 'u', metaData: 'm'}
    const [a, b] = [await serveSeed(seed), await serveSeed(seed)]
    await a.close()
    await b.close()
    expect(a.base).not.toBe(b.base)
  })
})
