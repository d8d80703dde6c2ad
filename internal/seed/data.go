package seed

import "github.com/onemember/onemember/ent/schema/enum"

type buSpec struct {
	code, name, kind string
	stores           []storeSpec
}

type storeSpec struct{ code, name, city, region string }

// group is the demo group: a mall, a supermarket, a restaurant chain and a
// bookstore, twenty stores in eight cities.
var group = []buSpec{
	{"MALL", "万象汇购物中心", "MALL", []storeSpec{
		{"MALL-SH-01", "万象汇·上海徐汇店", "上海", "310104"},
		{"MALL-HZ-01", "万象汇·杭州西湖店", "杭州", "330106"},
		{"MALL-NJ-01", "万象汇·南京新街口店", "南京", "320102"},
		{"MALL-SZ-01", "万象汇·深圳南山店", "深圳", "440305"},
		{"MALL-CD-01", "万象汇·成都春熙路店", "成都", "510104"},
	}},
	{"SUPER", "鲜汇超市", "SUPERMARKET", []storeSpec{
		{"SUPER-SH-01", "鲜汇超市·上海浦东店", "上海", "310115"},
		{"SUPER-SH-02", "鲜汇超市·上海静安店", "上海", "310106"},
		{"SUPER-SZ-01", "鲜汇超市·苏州园区店", "苏州", "320571"},
		{"SUPER-BJ-01", "鲜汇超市·北京朝阳店", "北京", "110105"},
		{"SUPER-GZ-01", "鲜汇超市·广州天河店", "广州", "440106"},
		{"SUPER-ONLINE", "鲜汇到家(线上)", "上海", "310000"},
	}},
	{"DINING", "知味餐饮", "RESTAURANT", []storeSpec{
		{"DINING-SH-01", "知味小馆·上海陆家嘴店", "上海", "310115"},
		{"DINING-HZ-01", "知味小馆·杭州湖滨店", "杭州", "330102"},
		{"DINING-BJ-01", "知味小馆·北京三里屯店", "北京", "110105"},
		{"DINING-CD-01", "知味小馆·成都太古里店", "成都", "510104"},
		{"DINING-GZ-01", "知味小馆·广州珠江新城店", "广州", "440106"},
	}},
	{"BOOKS", "青简书店", "BOOKSTORE", []storeSpec{
		{"BOOKS-SH-01", "青简书店·上海思南店", "上海", "310101"},
		{"BOOKS-NJ-01", "青简书店·南京先锋店", "南京", "320106"},
		{"BOOKS-HZ-01", "青简书店·杭州良渚店", "杭州", "330110"},
		{"BOOKS-BJ-01", "青简书店·北京五道口店", "北京", "110108"},
	}},
}

type benefitSpec struct {
	code, name, description string
	kind                    enum.BenefitKind
}

// benefits and the tier ladder follow the supermarket plan (DOMAIN.md).
var benefits = []benefitSpec{
	{"DISCOUNT_95", "会员价95折", "全场商品95折", "DISCOUNT"},
	{"POINTS_EARNING", "消费积分", "消费即得积分，可抵现", "POINTS_MULTIPLIER"},
	{"DISCOUNT_90", "会员价9折", "全场商品9折", "DISCOUNT"},
	{"BIRTHDAY_COUPON_5", "生日礼券5元", "生日当月赠送5元无门槛券", "BIRTHDAY_GIFT"},
	{"PRIORITY_CHECKOUT", "优先结账", "专属收银通道", "PRIORITY_CHECKOUT"},
	{"DISCOUNT_85", "会员价85折", "全场商品85折", "DISCOUNT"},
	{"FREE_DELIVERY_100", "满100免运费", "线上订单满100元免配送费", "FREE_SHIPPING"},
	{"EXCLUSIVE_PRODUCTS", "专享商品", "金卡及以上专享商品", "EXCLUSIVE_PRODUCTS"},
	{"DISCOUNT_80", "会员价8折", "全场商品8折", "DISCOUNT"},
	{"PERSONAL_SHOPPER", "专属导购", "一对一专属购物顾问", "PERSONAL_SHOPPER"},
	{"REFERRAL_REWARD", "推荐奖励", "推荐好友首单后获额外奖励", "EVENT_ACCESS"},
}

type tierSpec struct {
	code, name        string
	rank              int
	threshold         int64
	monthlySpend      int64 // fen
	referrals         int
	multiplierPermill int
	benefits          []string
}

var tiers = []tierSpec{
	{"NORMAL", "普通会员", 0, 0, 0, 0, 1000, []string{"DISCOUNT_95", "POINTS_EARNING"}},
	{"SILVER", "银卡会员", 1, 500, 0, 0, 1200, []string{"DISCOUNT_90", "POINTS_EARNING", "BIRTHDAY_COUPON_5", "PRIORITY_CHECKOUT"}},
	{"GOLD", "金卡会员", 2, 1500, 20000, 0, 1500, []string{"DISCOUNT_85", "POINTS_EARNING", "BIRTHDAY_COUPON_5", "PRIORITY_CHECKOUT", "FREE_DELIVERY_100", "EXCLUSIVE_PRODUCTS"}},
	{"DIAMOND", "钻石会员", 3, 3000, 0, 1, 2000, []string{"DISCOUNT_80", "POINTS_EARNING", "BIRTHDAY_COUPON_5", "PRIORITY_CHECKOUT", "FREE_DELIVERY_100", "EXCLUSIVE_PRODUCTS", "PERSONAL_SHOPPER", "REFERRAL_REWARD"}},
}

var surnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高", "林", "罗",
	"郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾", "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "欧阳", "司马"}

var givenMale = []string{"伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "浩然", "子轩", "宇航", "俊杰", "志强", "建华", "文博", "思远", "天佑", "嘉豪"}
var givenFemale = []string{"芳", "娜", "敏", "静", "丽", "艳", "婷", "雪", "琳", "颖", "欣怡", "梓涵", "诗涵", "雨桐", "佳怡", "晓燕", "美玲", "思琪", "若曦", "可馨"}

// regions are GB/T 2260 codes weighted towards the group's cities.
var regions = []string{"310104", "310115", "310106", "330106", "330102", "320102", "320571", "110105", "110108", "440305", "440106", "510104", "420102", "610113"}

var channels = []struct {
	ch     enum.Channel
	weight int
}{{enum.ChannelMiniProgram, 45}, {enum.ChannelPOS, 25}, {enum.ChannelApp, 15}, {enum.ChannelEcommerce, 10}, {enum.ChannelOfficialAccount, 5}}

var mobilePrefixes = []string{"130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158", "159", "166", "177", "180", "181", "186", "187", "188", "189", "199"}

type planSpec struct {
	code, name string
	period     enum.PlanPeriod
	price      int64
	benefits   []string
}

// plans are the paid cards (付费会员卡) on sale.
var plans = []planSpec{
	{"PLUS_MONTH", "PLUS会员月卡", "MONTH", 1990, []string{"FREE_DELIVERY_100", "PRIORITY_CHECKOUT"}},
	{"PLUS_QUARTER", "PLUS会员季卡", "QUARTER", 4990, []string{"FREE_DELIVERY_100", "PRIORITY_CHECKOUT"}},
	{"PLUS_YEAR", "PLUS会员年卡", "YEAR", 16800, []string{"FREE_DELIVERY_100", "PRIORITY_CHECKOUT", "EXCLUSIVE_PRODUCTS"}},
}
