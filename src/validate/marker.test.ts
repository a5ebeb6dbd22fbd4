import {describe, expect, it} from 'vitest'

import {projectDirs} from '../recipe/load.js'
import {markerLine} from './marker.js'

const kernels = projectDirs(new URL('../..', import.meta.url).pathname).kernels

describe('markerLine', () => {
  it('reads the line the 6.1 marker patch prints at boot', async () => {
    expect(await markerLine(kernels, [{file: '6.1/cvm-marker.patch', subject: 'init: print the cvm-image series marker at boot'}])).toBe('cvm-image: series debian-12-cvm applied')
  })
  it('finds the patch by its bare name in the recipe\'s kernel line', async () => {
    expect(await markerLine(kernels, [{file: 'cvm-marker.patch', subject: 'init: print the cvm-image series marker at boot'}], '6.1')).toBe('cvm-image: series debian-12-cvm applied')
  })
  it('no marker patch in the series: nothing to look for', async () => {
    expect(await markerLine(kernels, [{subject: 'swiotlb: respect min_align_mask'}])).toBeUndefined()
    expect(await markerLine(kernels, undefined)).toBeUndefined()
  })
})
