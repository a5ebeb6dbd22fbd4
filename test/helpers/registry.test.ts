import {readFileSync} from 'node:fs'
import {request} from 'node:https'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {startRegistry, type TestRegistry} from './registry.js'

/** GET /v2/ with the test CA (or none), with or without the user's password. */
function probe(reg: TestRegistry, opts: {ca: boolean; auth: boolean}): Promise<{status: number; challenge?: string}> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = opts.auth ? {authorization: `Basic ${Buffer.from(`${reg.user}:${reg.password}`).toString('base64')}`} : {}
    const req = request(`${reg.url}/v2/`, {headers, ca: opts.ca ? readFileSync(reg.caFile) : undefined}, (res) => {
      res.resume()
      resolve({status: res.statusCode ?? 0, challenge: res.headers['www-authenticate']})
    })
    req.on('error', reject)
    req.end()
  })
}

describe('test registry harness', () => {
  let reg: TestRegistry
  beforeAll(async () => {
    reg = await startRegistry()
  }, 60_000)
  afterAll(async () => reg?.stop())

  it('serves TLS only to a client that trusts its CA, and asks for Basic auth', async () => {
    await expect(probe(reg, {ca: false, auth: false})).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i)
    const anonymous = await probe(reg, {ca: true, auth: false})
    expect(anonymous.status).toBe(401)
    expect(anonymous.challenge).toMatch(/^Basic realm="cvm-image-test"/)
    expect((await probe(reg, {ca: true, auth: true})).status).toBe(200)
  })
})
