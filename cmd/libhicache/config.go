//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// storeConfig is hc_open's JSON: hicachefile.Config in SGLang's words.
// An unknown field is an error, so that a misspelt setting never passes
// silently.
type storeConfig struct {
	Dir               string  `json:"dir"`
	ModelName         string  `json:"model_name"`
	TPRank            int     `json:"tp_rank"`
	TPSize            int     `json:"tp_size"`
	PPRank            int     `json:"pp_rank"`
	PPSize            int     `json:"pp_size"`
	CPRank            int     `json:"cp_rank"`
	CPSize            int     `json:"cp_size"`
	IsMLA             bool    `json:"is_mla"`
	MaxBytes          int64   `json:"max_bytes"`
	MinFreeBytes      int64   `json:"min_free_bytes"`
	EvictionRatio     float64 `json:"eviction_ratio"`
	StorageOwner      *bool   `json:"storage_owner"`
	IOWorkers         int     `json:"io_workers"`
	DirectIO          bool    `json:"direct_io"`
	Sync              bool    `json:"sync"`
	NoWatch           bool    `json:"no_watch"`
	NoEnv             bool    `json:"no_env"`
	MaxBatchFileBytes int64   `json:"max_batch_file_bytes"`
}

// decodeStrict decodes js into v, refusing unknown fields and trailing data.
func decodeStrict(js []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errArgument, err)
	}
	if d.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", errArgument)
	}
	return nil
}

// parseStoreConfig turns hc_open's JSON into a hicachefile.Config.
func parseStoreConfig(js []byte) (hicachefile.Config, error) {
	var c storeConfig
	if err := decodeStrict(js, &c); err != nil {
		return hicachefile.Config{}, err
	}
	cfg := hicachefile.Config{
		Dir: c.Dir, ModelName: c.ModelName,
		TPRank: c.TPRank, TPSize: c.TPSize, PPRank: c.PPRank, PPSize: c.PPSize,
		CPRank: c.CPRank, CPSize: c.CPSize, IsMLA: c.IsMLA,
		MaxBytes: c.MaxBytes, MinFreeBytes: c.MinFreeBytes, EvictionRatio: c.EvictionRatio,
		StorageOwner: c.StorageOwner,
		IOWorkers:    c.IOWorkers, DirectIO: c.DirectIO, Sync: c.Sync, NoWatch: c.NoWatch, NoEnv: c.NoEnv,
		MaxBatchFileBytes: c.MaxBatchFileBytes,
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// poolConfig is hc_register_pool's JSON: SGLang's host pool attributes.
type poolConfig struct {
	Kind          string `json:"kind"` // "mha", "mla" or "component"
	Layout        string `json:"layout"`
	DType         string `json:"dtype"` // torch's name without "torch."
	PageSize      int    `json:"page_size"`
	Size          int    `json:"size"` // token slots: pages x page_size
	LayerNum      int    `json:"layer_num"`
	HeadNum       int    `json:"head_num"`
	HeadDim       int    `json:"head_dim"`
	KVLoraRank    int    `json:"kv_lora_rank"`
	QKRopeHeadDim int    `json:"qk_rope_head_dim"`
	// BufferBytes is, for a component pool, each buffer's bytes per token
	// slot (hostcache.Config.BufferBytes).
	BufferBytes []int `json:"buffer_bytes"`
}

// parsePoolConfig turns hc_register_pool's JSON into a hostcache.Config.
func parsePoolConfig(js []byte) (hostcache.Config, error) {
	var c poolConfig
	if err := decodeStrict(js, &c); err != nil {
		return hostcache.Config{}, err
	}
	cfg := hostcache.Config{
		Layout: hostcache.Layout(c.Layout), DType: hostcache.DType(c.DType),
		PageSize: c.PageSize, LayerNum: c.LayerNum,
		HeadNum: c.HeadNum, HeadDim: c.HeadDim,
		KVLoraRank: c.KVLoraRank, QKRopeHeadDim: c.QKRopeHeadDim,
	}
	switch c.Kind {
	case "mha":
		cfg.Kind = hostcache.MHA
	case "mla":
		cfg.Kind = hostcache.MLA
	case "component":
		cfg.Kind = hostcache.Component
		if len(c.BufferBytes) == 0 || len(c.BufferBytes) > hostcache.MaxComponentBuffers {
			return cfg, fmt.Errorf("%w: %d buffer_bytes, want 1 to %d", hostcache.ErrInvalidConfig, len(c.BufferBytes), hostcache.MaxComponentBuffers)
		}
		copy(cfg.BufferBytes[:], c.BufferBytes)
	default:
		return cfg, fmt.Errorf("%w: kind %q, want \"mha\", \"mla\" or \"component\"", hostcache.ErrInvalidConfig, c.Kind)
	}
	if c.PageSize <= 0 || c.Size <= 0 || c.Size%c.PageSize != 0 {
		return cfg, fmt.Errorf("%w: size %d is not a positive multiple of page_size %d", hostcache.ErrInvalidConfig, c.Size, c.PageSize)
	}
	cfg.Pages = c.Size / c.PageSize
	return cfg, cfg.Validate()
}
